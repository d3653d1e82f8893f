//! Sizes in `gateway.yaml`: a number of bytes, or a string such as `512B`, `32KiB`, `1MiB`
//! (`k`/`KB` and `M`/`MB` are read as powers of 1024 too, as nginx does).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A size in bytes as written in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSize(pub usize);

const EXPECTED: &str = "a number of bytes or a size such as 512B, 32KiB, 1MiB";

pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` is not {EXPECTED}"));
    }
    let value: usize = digits.parse().map_err(|_| format!("`{text}` is too large"))?;
    let multiplier: usize = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "KB" | "KiB" | "kb" | "kB" => 1024,
        "m" | "M" | "MB" | "MiB" | "mb" => 1024 * 1024,
        other => return Err(format!("unknown size unit `{other}` in `{text}`; expected {EXPECTED}")),
    };
    value.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too large"))
}

impl<'de> Deserialize<'de> for ConfigSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ConfigSize;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                usize::try_from(v).map(ConfigSize).map_err(|_| E::custom("size too large"))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                usize::try_from(v)
                    .map(ConfigSize)
                    .map_err(|_| E::custom(format!("negative size {v}; expected {EXPECTED}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_size(v).map(ConfigSize).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("32KiB").unwrap(), 32 * 1024);
        assert_eq!(parse_size("8k").unwrap(), 8192);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        for bad in ["", "KiB", "1 parsec", "-1", "99999999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
