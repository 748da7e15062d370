//! The checks every section of the configuration shares: a number within its
//! range, a backend name the registry knows, a pixel format, an `auth` word.
//! Each turns a raw value into a checked one or into an error that points at
//! the value (file, line, column, caret), or names the flag it came from.
//! Pure functions, called while the configuration is parsed.

use std::ops::{Range, RangeInclusive};

use toml::Spanned;

use super::{Adapt, Auth, CaptureMode};
use crate::backend::table::{ConfigError, ConfigText};
use crate::backend::Kind;
use crate::media::frame::PixelFormat;
use crate::registry;

/// The value of an optional numeric key: `None` when the key is absent, the
/// value when it lies in `range`, else an error at the value saying `message`
/// (which gets the value). NaN lies in no range.
pub(super) fn in_range<T: PartialOrd>(
    file: &ConfigText,
    value: Option<Spanned<T>>,
    range: RangeInclusive<T>,
    message: impl FnOnce(&T) -> String,
) -> Result<Option<T>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if range.contains(v.get_ref()) => Ok(Some(v.into_inner())),
        Some(v) => Err(ConfigError::at(file, Some(v.span()), message(v.get_ref()))),
    }
}

/// "unknown source `x`" (with the known names) or "not available in this build"
/// (with the feature that brings it back), at `span`.
pub(super) fn unknown_name(
    file: &ConfigText,
    span: Option<Range<usize>>,
    kind: Kind,
    name: &str,
) -> ConfigError {
    let err = registry::unknown(kind, name);
    ConfigError::at(file, span, err.headline()).with_help(err.help())
}

/// The same, for a name given by `flag`.
pub(super) fn unknown_flag_name(flag: &str, kind: Kind, name: &str) -> ConfigError {
    let err = registry::unknown(kind, name);
    ConfigError::flag(flag, err.headline()).with_help(err.help())
}

/// The backend to use for one role: the flag's name, else the file's, else
/// `default`; the name must be a compiled-in backend or `auto` (a source:
/// the first camera that opens; a codec: [`registry::auto_codec`]; the
/// viewer's sink: [`registry::auto_sink`]).
pub(super) fn backend_name(
    file: &ConfigText,
    kind: Kind,
    value: Option<Spanned<String>>,
    flag: Option<&String>,
    flag_name: &str,
    default: &str,
) -> Result<String, ConfigError> {
    if let Some(name) = flag {
        if !(name == "auto" || registry::exists(kind, name)) {
            return Err(unknown_flag_name(flag_name, kind, name));
        }
        return Ok(name.clone());
    }
    match value {
        Some(v) => {
            if !(v.get_ref() == "auto" || registry::exists(kind, v.get_ref())) {
                return Err(unknown_name(file, Some(v.span()), kind, v.get_ref()));
            }
            Ok(v.into_inner())
        }
        None => Ok(default.to_string()),
    }
}

/// `[sources.NAME]`, `[codecs.NAME]`, `[sinks.NAME]`: every NAME must be a
/// backend, compiled in or not (one file serves every build).
pub(super) fn backend_tables<'a>(
    file: &ConfigText,
    kind: Kind,
    names: impl IntoIterator<Item = &'a Spanned<String>>,
) -> Result<(), ConfigError> {
    for name in names {
        if !registry::exists(kind, name.get_ref())
            && !registry::is_compiled_out(kind, name.get_ref())
        {
            return Err(unknown_name(file, Some(name.span()), kind, name.get_ref()));
        }
    }
    Ok(())
}

/// The capture's pixel format: `--format`, else the file's, else RGB24.
pub(super) fn pixel_format(
    file: &ConfigText,
    value: Option<Spanned<String>>,
    flag: Option<&String>,
) -> Result<PixelFormat, ConfigError> {
    let expected = || {
        let names: Vec<&str> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
        format!("expected one of: {}", names.join(", "))
    };
    if let Some(name) = flag {
        return PixelFormat::from_name(name).ok_or_else(|| {
            ConfigError::flag("--format", format!("unknown pixel format `{name}`"))
                .with_help(expected())
        });
    }
    match value {
        Some(v) => PixelFormat::from_name(v.get_ref()).ok_or_else(|| {
            ConfigError::at(
                file,
                Some(v.span()),
                format!("unknown pixel format `{}`", v.get_ref()),
            )
            .with_help(expected())
        }),
        None => Ok(PixelFormat::Rgb24),
    }
}

/// One of a key's words: `choices` (word, value), the first the default
/// when the key is absent. Anything else is refused at its place, listing
/// the words.
fn one_of<T: Copy>(
    file: &ConfigText,
    key: &str,
    value: Option<Spanned<String>>,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(v) = value else {
        return Ok(choices[0].1);
    };
    if let Some(&(_, found)) = choices.iter().find(|(word, _)| *word == v.get_ref()) {
        return Ok(found);
    }
    let words: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
    let others = match words.split_first() {
        Some((_, [])) | None => String::new(),
        Some((_, [only])) => format!(" or {only}"),
        Some((_, [middle @ .., last])) => format!(", {} or {last}", middle.join(", ")),
    };
    Err(ConfigError::at(
        file,
        Some(v.span()),
        format!(
            "{key} {:?}: expected {} (the default){others}",
            v.get_ref(),
            words[0]
        ),
    ))
}

/// `auth = "pair"` (the default) or `"none"`.
pub(super) fn auth(file: &ConfigText, value: Option<Spanned<String>>) -> Result<Auth, ConfigError> {
    one_of(
        file,
        "auth",
        value,
        &[("pair", Auth::Pair), ("none", Auth::None)],
    )
}

/// `adapt = "auto"` (the default) or `"off"`.
pub(super) fn adapt(
    file: &ConfigText,
    value: Option<Spanned<String>>,
) -> Result<Adapt, ConfigError> {
    one_of(
        file,
        "adapt",
        value,
        &[("auto", Adapt::Auto), ("off", Adapt::Off)],
    )
}

/// `capture = "auto"` (the default: on demand for a camera), `"on-demand"`
/// or `"always"`.
pub(super) fn capture(
    file: &ConfigText,
    value: Option<Spanned<String>>,
) -> Result<CaptureMode, ConfigError> {
    let choices = [
        ("auto", CaptureMode::Auto),
        ("on-demand", CaptureMode::OnDemand),
        ("always", CaptureMode::Always),
    ];
    one_of(file, "capture", value, &choices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigText {
        ConfigText {
            origin: "t.toml".into(),
            text: text.into(),
        }
    }

    /// A `Spanned` value read from `key = VALUE` on the second line of a file.
    fn spanned<T: serde::de::DeserializeOwned>(text: &str) -> (ConfigText, Spanned<T>) {
        #[derive(serde::Deserialize)]
        struct One<T> {
            key: Spanned<T>,
        }
        let file = file(&format!("# first\nkey = {text}\n"));
        let one: One<T> = toml::from_str(&file.text).unwrap();
        (file, one.key)
    }

    #[test]
    fn in_range_takes_the_bounds_and_points_outside_them() {
        for inside in ["1", "5", "16"] {
            let (f, v) = spanned::<u32>(inside);
            let got = in_range(&f, Some(v), 1..=16, |_| unreachable!()).unwrap();
            assert_eq!(got, Some(inside.parse().unwrap()));
        }
        for outside in ["0", "17"] {
            let (f, v) = spanned::<u32>(outside);
            let e = in_range(&f, Some(v), 1..=16, |n| format!("{n} is out")).unwrap_err();
            assert_eq!(e.position, Some((2, 7)), "{e}");
            assert_eq!(e.message, format!("{outside} is out"));
            assert!(e.to_string().contains("2 | key = "), "{e}");
        }
        let (f, v) = spanned::<f64>("nan");
        assert!(in_range(&f, Some(v), 0.0..=1.0, |_| String::new()).is_err());
        assert_eq!(
            in_range::<u32>(&f, None, 1..=2, |_| String::new()),
            Ok(None)
        );
    }

    #[test]
    fn auth_is_pair_or_none() {
        let (f, v) = spanned::<String>("\"none\"");
        assert_eq!(auth(&f, Some(v)), Ok(Auth::None));
        assert_eq!(auth(&f, None), Ok(Auth::Pair));
        let (f, v) = spanned::<String>("\"open\"");
        let e = auth(&f, Some(v)).unwrap_err();
        assert_eq!(e.position, Some((2, 7)), "{e}");
        assert!(e.message.contains("expected \"pair\""), "{e}");
    }

    /// Each word list says itself whole, the default first.
    #[test]
    fn a_word_not_in_the_list_is_refused_with_the_list() {
        let (f, v) = spanned::<String>("\"lazy\"");
        let e = capture(&f, Some(v)).unwrap_err();
        assert_eq!(
            e.message,
            "capture \"lazy\": expected \"auto\" (the default), \"on-demand\" or \"always\""
        );
        let (f, v) = spanned::<String>("\"on\"");
        let e = adapt(&f, Some(v)).unwrap_err();
        assert_eq!(
            e.message,
            "adapt \"on\": expected \"auto\" (the default) or \"off\""
        );
        let (f, v) = spanned::<String>("\"always\"");
        assert_eq!(capture(&f, Some(v)), Ok(CaptureMode::Always));
        assert_eq!(capture(&f, None), Ok(CaptureMode::Auto));
    }

    #[test]
    fn backend_names_come_from_the_registry() {
        let (f, v) = spanned::<String>("\"lz5\"");
        let e = backend_name(&f, Kind::Codec, Some(v), None, "--codec", "lz4").unwrap_err();
        assert_eq!(e.position, Some((2, 7)), "{e}");
        let known = crate::registry::names(Kind::Codec).join(", ");
        assert_eq!(e.help, Some(format!("expected one of: {known}")));
        let (f, v) = spanned::<String>("\"auto\"");
        assert_eq!(
            backend_name(&f, Kind::Source, Some(v), None, "--source", "x").unwrap(),
            "auto"
        );
        let (f, v) = spanned::<String>("\"auto\"");
        assert_eq!(
            backend_name(&f, Kind::Sink, Some(v), None, "--sink", "x").unwrap(),
            "auto",
            "the viewer's sink: a window where one opens"
        );
        let e = backend_name(&f, Kind::Sink, None, Some(&"tv".into()), "--sink", "x").unwrap_err();
        assert!(
            e.to_string().starts_with("--sink: unknown sink `tv`"),
            "{e}"
        );
        assert_eq!(
            backend_name(&f, Kind::Sink, None, None, "--sink", "null").unwrap(),
            "null"
        );
    }

    #[test]
    fn unknown_pixel_format_from_a_flag_names_the_flag() {
        let e = pixel_format(&file(""), None, Some(&"rgb48".into())).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--format: unknown pixel format `rgb48`"),
            "{e}"
        );
        assert!(e.help.unwrap().contains("rgb24"));
    }
}
