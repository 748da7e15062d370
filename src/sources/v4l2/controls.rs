//! Camera controls (brightness, exposure, ...): what a node has, as
//! `livestream devices --controls` lists them, and setting the ones
//! `[sources.v4l2.controls]` names, each checked against what the device says
//! about it before it is set.
//!
//! Control names, types, ranges and menus come from the device: untrusted, and
//! possibly newer than the bindings (unknown types list as "other"). Used by the
//! thread that opens the camera, and by `livestream devices`.

use std::io;

use serde::Deserialize;
use v4l::v4l_sys as sys;

use super::device::{c_text, Node};
use crate::error::BackendError;
use crate::sources::camera::{control_key, ControlInfo, ControlKind};
use crate::v4l2::ioctl::{zeroed, GetCtrl, QueryExtCtrl, QueryMenu, SetCtrl};

/// A control's value in `livestream.toml`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub(super) enum ControlValue {
    Bool(bool),
    Int(i64),
    /// A menu entry by its label.
    Label(String),
}

impl Node {
    /// Every control with its id, as the device describes them.
    pub(super) fn controls(&self) -> Vec<(u32, ControlInfo)> {
        let mut out = Vec::new();
        let mut id = 0u32;
        for _ in 0..1024 {
            let mut q: sys::v4l2_query_ext_ctrl = zeroed();
            q.id = id | sys::V4L2_CTRL_FLAG_NEXT_CTRL;
            if self.ioctl(QueryExtCtrl, &mut q).is_err() || q.id == id {
                break;
            }
            id = q.id;
            let kind = match q.type_ {
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER => ControlKind::Integer,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_BOOLEAN => ControlKind::Boolean,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU
                | sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU => ControlKind::Menu,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_BUTTON => ControlKind::Button,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_CTRL_CLASS => continue,
                _ => ControlKind::Other,
            };
            if q.flags & sys::V4L2_CTRL_FLAG_DISABLED != 0 {
                continue;
            }
            let name: Vec<u8> = q.name.iter().map(|&c| c as u8).collect();
            let menu = if kind == ControlKind::Menu {
                self.menu(&q)
            } else {
                Vec::new()
            };
            let simple = matches!(
                kind,
                ControlKind::Integer | ControlKind::Boolean | ControlKind::Menu
            );
            let current = (simple && q.flags & sys::V4L2_CTRL_FLAG_WRITE_ONLY == 0)
                .then(|| self.control(q.id).ok())
                .flatten();
            out.push((
                q.id,
                ControlInfo {
                    key: control_key(&c_text(&name)),
                    kind,
                    min: q.minimum,
                    max: q.maximum,
                    step: q.step,
                    default: q.default_value,
                    current,
                    menu,
                    read_only: q.flags & sys::V4L2_CTRL_FLAG_READ_ONLY != 0,
                    inactive: q.flags & sys::V4L2_CTRL_FLAG_INACTIVE != 0,
                },
            ));
        }
        out
    }

    /// The entries of a menu control (at most 65 of them), labelled by name or,
    /// for an integer menu, by value.
    fn menu(&self, q: &sys::v4l2_query_ext_ctrl) -> Vec<(i64, String)> {
        let mut menu = Vec::new();
        if q.minimum < 0 || q.maximum < q.minimum {
            return menu;
        }
        for index in q.minimum..=q.maximum.min(q.minimum + 64) {
            let mut m: sys::v4l2_querymenu = zeroed();
            m.id = q.id;
            m.index = index as u32;
            if self.ioctl(QueryMenu, &mut m).is_err() {
                continue; // drivers may leave holes in a menu
            }
            let label = if q.type_ == sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU {
                // SAFETY: the kernel fills `name` for the entries of a menu control.
                c_text(unsafe { &m.__bindgen_anon_1.name })
            } else {
                // SAFETY: and `value` for those of an integer menu control.
                unsafe { m.__bindgen_anon_1.value }.to_string()
            };
            menu.push((index, label));
        }
        menu
    }

    fn control(&self, id: u32) -> io::Result<i64> {
        let mut c = sys::v4l2_control { id, value: 0 };
        self.ioctl(GetCtrl, &mut c)?;
        Ok(c.value as i64)
    }

    fn set_control(&self, id: u32, value: i64) -> io::Result<()> {
        let value = i32::try_from(value)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "value out of range"))?;
        let mut c = sys::v4l2_control { id, value };
        self.ioctl(SetCtrl, &mut c)
    }

    /// Asks an H.264 camera for a keyframe (a button control: any value
    /// presses it). Fails when the driver has no such control.
    pub(super) fn force_keyframe(&self) -> io::Result<()> {
        self.set_control(sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
    }

    /// Sets the configured controls, each checked against what the device says
    /// about it first.
    pub(super) fn apply_controls(
        &self,
        wanted: &[(String, ControlValue)],
    ) -> Result<(), BackendError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let controls = self.controls();
        let invalid = |why: String| BackendError::Invalid {
            what: format!("[sources.v4l2.controls] for {}", self.path.display()),
            why,
        };
        for (key, value) in wanted {
            let Some((id, c)) = controls.iter().find(|(_, c)| &c.key == key) else {
                let mut names: Vec<_> = controls.iter().map(|(_, c)| c.key.as_str()).collect();
                names.sort();
                return Err(invalid(format!(
                    "{} has no control `{key}`; it has: {}",
                    self.card,
                    names.join(", ")
                )));
            };
            if c.read_only {
                return Err(invalid(format!("control `{key}` is read-only")));
            }
            let v = match (value, c.kind) {
                (ControlValue::Bool(b), ControlKind::Boolean) => *b as i64,
                (ControlValue::Int(n), ControlKind::Integer | ControlKind::Boolean) => *n,
                (ControlValue::Int(n), ControlKind::Menu) if c.menu.iter().any(|(i, _)| i == n) => {
                    *n
                }
                (ControlValue::Label(l), ControlKind::Menu) => {
                    match c.menu.iter().find(|(_, name)| name.eq_ignore_ascii_case(l)) {
                        Some((i, _)) => *i,
                        None => {
                            let labels: Vec<_> =
                                c.menu.iter().map(|(_, n)| format!("{n:?}")).collect();
                            return Err(invalid(format!(
                                "control `{key}` has no entry {l:?}; expected one of: {}",
                                labels.join(", ")
                            )));
                        }
                    }
                }
                (ControlValue::Int(_), ControlKind::Menu) => {
                    let entries: Vec<_> =
                        c.menu.iter().map(|(i, n)| format!("{i} ({n})")).collect();
                    return Err(invalid(format!(
                        "control `{key}` is a menu; expected one of: {}",
                        entries.join(", ")
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "control `{key}` is a {} control: {value:?} does not fit it",
                        c.kind
                    )))
                }
            };
            if v < c.min || v > c.max {
                return Err(invalid(format!(
                    "control `{key}` = {v} is outside its range {} to {}",
                    c.min, c.max
                )));
            }
            if c.kind == ControlKind::Integer && c.step > 1 && (v - c.min) as u64 % c.step != 0 {
                return Err(invalid(format!(
                    "control `{key}` = {v} is not on its steps of {} from {}",
                    c.step, c.min
                )));
            }
            if c.inactive {
                log::warn!("control `{key}` is inactive now (another control overrides it); setting it anyway");
            }
            self.set_control(*id, v)
                .map_err(|e| BackendError::io(format!("setting control `{key}` = {v}"), e))?;
            log::info!("{}: control {key} = {v}", self.path.display());
        }
        Ok(())
    }
}
