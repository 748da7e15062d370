//! The window's keys: what each keysym does, and the server's keyboard map
//! from keycodes to keysyms. Pure data, read as key events arrive on the thread
//! that owns the sink (the viewer's calling thread, or a server's `sink-NAME`).

/// Keysyms the window acts on (X11 `keysymdef.h`).
mod keysym {
    pub const Q: u32 = 0x71;
    pub const F: u32 = 0x66;
    pub const H: u32 = 0x68;
    pub const ESCAPE: u32 = 0xff1b;
}

/// What a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Quit,
    FullScreen,
    Overlay,
}

/// The action of a keysym; capitals act as their small letters (a keyboard map
/// may list only the capital for a letter key).
pub(super) fn action(sym: u32) -> Option<Action> {
    let sym = if (0x41..=0x5a).contains(&sym) {
        sym + 0x20
    } else {
        sym
    };
    match sym {
        keysym::Q | keysym::ESCAPE => Some(Action::Quit),
        keysym::F => Some(Action::FullScreen),
        keysym::H => Some(Action::Overlay),
        _ => None,
    }
}

/// The server's keyboard map: keycode to keysyms, `per` keysyms per keycode from
/// keycode `min` on.
#[derive(Debug, Default)]
pub(super) struct Keymap {
    pub(super) min: u8,
    pub(super) per: u8,
    pub(super) syms: Vec<u32>,
}

impl Keymap {
    /// The keysym of a key pressed without modifiers (the first of its column),
    /// `None` for a keycode outside the map or without one.
    pub(super) fn keysym(&self, code: u8) -> Option<u32> {
        let i = (code.checked_sub(self.min)? as usize).checked_mul(self.per as usize)?;
        self.syms.get(i).copied().filter(|&s| s != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action(keysym::Q), Some(Action::Quit));
        assert_eq!(action(keysym::ESCAPE), Some(Action::Quit));
        assert_eq!(action(keysym::F), Some(Action::FullScreen));
        assert_eq!(action(keysym::H), Some(Action::Overlay));
        assert_eq!(action(0x51), Some(Action::Quit), "Q as q");
        assert_eq!(action(0x48), Some(Action::Overlay), "H as h");
        assert_eq!(action(0x61), None, "a");
        assert_eq!(action(0xff0d), None, "Return");
        assert_eq!(action(0x1000071), None, "not a Latin-1 keysym");
    }

    #[test]
    fn keymap_reads_the_first_keysym_of_a_keycode() {
        // Keycodes 8.., two keysyms each: 8 = q Q, 9 = Escape, 10 = nothing.
        let map = Keymap {
            min: 8,
            per: 2,
            syms: vec![0x71, 0x51, 0xff1b, 0, 0, 0],
        };
        assert_eq!(map.keysym(8), Some(0x71));
        assert_eq!(map.keysym(9), Some(0xff1b));
        assert_eq!(map.keysym(10), None, "no keysym");
        assert_eq!(map.keysym(11), None, "past the map");
        assert_eq!(map.keysym(7), None, "below the first keycode");
        assert_eq!(Keymap::default().keysym(8), None, "an empty map");
    }
}
