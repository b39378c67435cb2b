//! The mechanism behind settings that are declared once: a [`Setting`] (what the command line,
//! `--set`, `--help` and grid sweeps know of one), the types a setting may have
//! ([`SettingValue`]), and the [`section!`] macro that declares a section's struct, its defaults
//! and its settings together. The run's settings themselves are declared in `config`.

use std::path::PathBuf;

use kaiming_init::Scheme;
use kaiming_kernels::{ConvAlgorithm, IsaChoice};
use kaiming_resnet::{Branch, ModelName, Norm, StemKind};
use serde::Serialize;

use crate::backend::Backend;
use crate::precision::Precision;
use crate::schedule::ScheduleKind;

/// One setting, as the command line, recipes, `--help` and sweeps address it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `section.name` (`name` at the top level): the TOML key and the `--set` name.
    pub key: &'static str,
    /// The flag, without its dashes.
    pub flag: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// The `--help` heading it is listed under.
    pub heading: &'static str,
    /// A valid value other than the default, as text (the agreement test sets it three ways).
    pub example: &'static str,
    /// Whether the flag alone means `true` (`--nesterov`).
    pub switch: bool,
    pub(crate) parse: fn(&str) -> Result<toml::Value, String>,
    pub(crate) default: fn() -> String,
}

impl Setting {
    /// The value a flag's or `--set`'s text stands for, as TOML holds it.
    pub fn parse(&self, text: &str) -> Result<toml::Value, String> {
        (self.parse)(text)
    }

    /// The default, as `--help` shows it.
    pub fn default_text(&self) -> String {
        (self.default)()
    }

    /// The last part of the key (`depth` of `model.depth`): what a grid run's name uses.
    pub fn name(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }
}

/// A type a setting can have: parsed from a flag's text, shown as a default.
pub trait SettingValue: Sized {
    /// Whether the flag alone means a value (`true`).
    const SWITCH: bool = false;

    /// The TOML value `text` stands for, or why it stands for none.
    fn parse_text(text: &str) -> Result<toml::Value, String>;

    /// How `--help` shows the value.
    fn show(&self) -> String;
}

pub(crate) fn to_toml_value<T: Serialize>(value: T) -> Result<toml::Value, String> {
    toml::Value::try_from(value).map_err(|error| error.to_string())
}

/// Settings whose text is their `FromStr` and `Display`.
macro_rules! text_values {
    ($($type:ty),+ $(,)?) => {$(
        impl SettingValue for $type {
            fn parse_text(text: &str) -> Result<toml::Value, String> {
                to_toml_value(text.trim().parse::<$type>().map_err(|error| error.to_string())?)
            }

            fn show(&self) -> String {
                self.to_string()
            }
        }
    )+};
}

text_values!(
    usize,
    u64,
    f64,
    Scheme,
    Backend,
    Precision,
    ModelName,
    StemKind,
    Norm,
    Branch,
    ScheduleKind,
    ConvAlgorithm,
    IsaChoice,
);

impl SettingValue for bool {
    const SWITCH: bool = true;

    fn parse_text(text: &str) -> Result<toml::Value, String> {
        match text.trim() {
            "true" | "yes" | "on" | "1" => Ok(toml::Value::Boolean(true)),
            "false" | "no" | "off" | "0" => Ok(toml::Value::Boolean(false)),
            other => Err(format!("'{other}' is not true or false")),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for Option<usize> {
    fn parse_text(text: &str) -> Result<toml::Value, String> {
        usize::parse_text(text)
    }

    fn show(&self) -> String {
        self.map_or("none".to_string(), |n| n.to_string())
    }
}

impl SettingValue for Option<PathBuf> {
    fn parse_text(text: &str) -> Result<toml::Value, String> {
        match text {
            "" => Err("an empty path".to_string()),
            path => Ok(toml::Value::String(path.to_string())),
        }
    }

    fn show(&self) -> String {
        self.as_ref()
            .map_or("none".to_string(), |p| p.display().to_string())
    }
}

impl SettingValue for Vec<f64> {
    fn parse_text(text: &str) -> Result<toml::Value, String> {
        let numbers = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| {
                part.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("'{part}' is not a number"))
            })
            .collect::<Result<Vec<f64>, String>>()?;
        to_toml_value(numbers)
    }

    fn show(&self) -> String {
        if self.is_empty() {
            return "none".to_string();
        }
        self.iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Declares one section of settings: the struct (its fields are the TOML keys, absent ones
/// take their defaults), its `Default`, and its entries in [`SETTINGS`]. Each field is
///
/// ```text
/// /// help (the flag's, and the field's doc)
/// name: Type = default, flag "flag-name", example "a valid other value";
/// ```
///
/// with `shown "text"` after the flag where `--help` should describe the default in words, and
/// `derive Copy` after the heading for a section of plain values.
macro_rules! section {
    (
        $(#[doc = $doc:literal])+
        pub struct $name:ident in $prefix:literal, heading $heading:literal $(, derive $copy:ident)? {
            $(
                $(#[doc = $help:literal])+
                $(#[serde($($serde:tt)*)])?
                $field:ident: $type:ty = $default:expr,
                    flag $flag:literal $(, shown $shown:literal)?, example $example:literal;
            )*
        }
        $(sections {
            $($(#[doc = $section_doc:literal])+ $section:ident: $section_type:ty),* $(,)?
        })?
    ) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize $(, $copy)?)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $help])+
                $(#[serde($($serde)*)])?
                pub $field: $type,
            )*
            $($(
                $(#[doc = $section_doc])+
                pub $section: $section_type,
            )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $default,)*
                    $($($section: <$section_type>::default(),)*)?
                }
            }
        }

        impl $name {
            /// This section's settings and its subsections', in declaration order.
            fn declare(settings: &mut Vec<$crate::settings::Setting>) {
                $(settings.push($crate::settings::Setting {
                    key: concat!($prefix, stringify!($field)),
                    flag: $flag,
                    help: concat!($($help),+),
                    heading: $heading,
                    example: $example,
                    switch: <$type as $crate::settings::SettingValue>::SWITCH,
                    parse: <$type as $crate::settings::SettingValue>::parse_text,
                    default: || {
                        let words: Option<&str> = None $(.or(Some($shown)))?;
                        words.map_or_else(
                            || $crate::settings::SettingValue::show(&<$name>::default().$field),
                            str::to_string,
                        )
                    },
                });)*
                $($(<$section_type>::declare(settings);)*)?
            }
        }
    };
}

pub(crate) use section;

/// Levenshtein distance, for "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
