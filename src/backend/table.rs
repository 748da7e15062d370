//! The parts of the configuration that backends see: a backend's own table
//! (`[sources.NAME]` ...), parsed on demand into the backend's options type,
//! what `[capture]` asks every source for, and the error type that points at
//! the spot in the file. Imports no other part of the configuration, nor the
//! registry, so backends can use it without import circles.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::backend::Kind;
use crate::media::frame::PixelFormat;

/// The configuration built into the binary: the repository's `livestream.toml`.
pub const EMBEDDED: &str = include_str!("../../livestream.toml");

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name (or `--flag`) the error is in.
    pub origin: String,
    /// 1-based line and column, when the error has a place in a file.
    pub position: Option<(usize, usize)>,
    pub message: String,
    /// The offending line and the caret under it, ready to print.
    snippet: Option<Box<(String, usize, usize)>>,
    /// "expected one of ..." and similar hints.
    pub help: Option<String>,
}

impl ConfigError {
    pub(crate) fn at(
        file: &ConfigText,
        span: Option<Range<usize>>,
        message: String,
    ) -> ConfigError {
        let mut err = ConfigError {
            origin: file.origin.clone(),
            position: None,
            message,
            snippet: None,
            help: None,
        };
        if let Some(span) = span {
            let start = span.start.min(file.text.len());
            let line_start = file.text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = file.text[start..]
                .find('\n')
                .map_or(file.text.len(), |i| start + i);
            let line_no = file.text[..start].matches('\n').count() + 1;
            let col = file.text[line_start..start].chars().count() + 1;
            let width = file.text[start..span.end.clamp(start, line_end)]
                .chars()
                .count()
                .max(1);
            err.position = Some((line_no, col));
            err.snippet = Some(Box::new((
                file.text[line_start..line_end].to_string(),
                col,
                width,
            )));
        }
        err
    }

    /// An error in a command-line flag.
    pub fn flag(flag: &str, message: String) -> ConfigError {
        ConfigError {
            origin: flag.to_string(),
            position: None,
            message,
            snippet: None,
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: String) -> ConfigError {
        self.help = Some(help);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.origin, line, col, self.message)?,
            None => write!(f, "{}: {}", self.origin, self.message)?,
        }
        if let (Some(snippet), Some((line, _))) = (&self.snippet, self.position) {
            let (text, col, width) = &**snippet;
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{line} | {text}\n{:gutter$} | {}{}",
                "",
                "",
                " ".repeat(col - 1),
                "^".repeat(*width),
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The text of a configuration and where it came from.
#[derive(Debug, Clone)]
pub struct ConfigText {
    pub origin: String,
    pub text: String,
}

impl ConfigText {
    pub fn embedded() -> ConfigText {
        ConfigText {
            origin: "livestream.toml (built in)".into(),
            text: EMBEDDED.into(),
        }
    }

    pub fn read(path: &Path) -> Result<ConfigText, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::flag(&path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Ok(ConfigText {
            origin: path.display().to_string(),
            text,
        })
    }

    /// Applies `--set key.path=value` overrides. The value is TOML (`30`, `true`,
    /// `"x"`); anything that does not parse as TOML is taken as a string.
    pub fn with_overrides(mut self, sets: &[String]) -> Result<ConfigText, ConfigError> {
        if sets.is_empty() {
            return Ok(self);
        }
        let mut doc: toml_edit::DocumentMut =
            self.text.parse().map_err(|e: toml_edit::TomlError| {
                ConfigError::at(&self, e.span(), e.message().trim().to_string())
            })?;
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .ok_or_else(|| ConfigError::flag("--set", format!("`{set}` is not KEY=VALUE")))?;
            let value: toml_edit::Value = value
                .trim()
                .parse()
                .unwrap_or_else(|_| toml_edit::Value::from(value.trim()));
            let parts: Vec<&str> = key.trim().split('.').collect();
            let (last, tables) = parts.split_last().unwrap_or((&"", &[]));
            let mut table = doc.as_table_mut();
            for part in tables {
                let entry = table
                    .entry(part)
                    .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
                table = entry.as_table_mut().ok_or_else(|| {
                    ConfigError::flag("--set", format!("`{part}` in `{key}` is not a table"))
                })?;
            }
            if last.is_empty() {
                return Err(ConfigError::flag(
                    "--set",
                    format!("`{set}` has an empty key"),
                ));
            }
            table.insert(last, toml_edit::Item::Value(value));
        }
        self.text = doc.to_string();
        self.origin = format!("{} (with --set)", self.origin);
        Ok(self)
    }
}

/// `[capture]`: what every source is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureConfig {
    pub width: u32,
    pub height: u32,
    /// Frames per second; 0 means as fast as possible.
    pub fps: f64,
    pub format: PixelFormat,
}

pub(crate) fn toml_error(file: &ConfigText, e: toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    // serde's "unknown field `x`, expected one of `a`, `b`" reads better split.
    match message.split_once(", expected ") {
        Some((what, expected)) => ConfigError::at(file, e.span(), what.to_string())
            .with_help(format!("expected {expected}")),
        None => ConfigError::at(file, e.span(), message),
    }
}

/// One backend's table in the configuration, parsed on demand by the backend into
/// its own options type, with errors that point into the file.
pub struct BackendConfig<'a> {
    pub(crate) text: &'a ConfigText,
    pub(crate) kind: Kind,
    pub(crate) name: String,
}

impl BackendConfig<'_> {
    /// Deserializes the table into the backend's options type; a missing table
    /// gives the type's defaults.
    pub fn parse<T: DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        let picked = Pick::<T> {
            path: &[self.kind.table(), &self.name],
            _t: PhantomData,
        }
        .deserialize(toml::Deserializer::new(&self.text.text))
        .map_err(|e| toml_error(self.text, e))?;
        Ok(picked.unwrap_or_default())
    }

    /// The table of another backend of the same kind, from the same configuration
    /// (for a backend that delegates, like `window`).
    pub fn sibling(&self, name: &str) -> BackendConfig<'_> {
        BackendConfig {
            text: self.text,
            kind: self.kind,
            name: name.to_string(),
        }
    }

    /// Points an error at this backend's table (for values checked after parsing).
    pub fn error(&self, message: String) -> ConfigError {
        ConfigError::flag(
            &format!("{} [{}.{}]", self.text.origin, self.kind.table(), self.name),
            message,
        )
    }

    /// Points an error at a value the backend read as `Spanned`.
    pub fn error_at(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::at(self.text, Some(span), message)
    }
}

/// Deserializes the value at `path` in a document, skipping everything else, so the
/// value's errors keep their place in the whole file.
struct Pick<'p, T> {
    path: &'p [&'p str],
    _t: PhantomData<T>,
}

impl<'de, T: serde::Deserialize<'de>> DeserializeSeed<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match self.path {
                [first] if *first == key => found = Some(map.next_value::<T>()?),
                [first, rest @ ..] if *first == key => {
                    found = map.next_value_seed(Pick::<T> {
                        path: rest,
                        _t: PhantomData,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}
