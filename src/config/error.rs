//! Configuration errors: every one names the file, the key path and what would be valid.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (the gateway config, or a file it references).
    pub file: PathBuf,
    /// Dotted key path inside `file`, e.g. `routes[1].upstream`; empty for the whole file.
    pub key: String,
    /// What is wrong and, where possible, what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found while loading a configuration; the gateway refuses to start on any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one file while the raw config is turned into the internal one, so that
/// `check` can print every problem at once rather than the first.
pub(crate) struct Diagnostics {
    file: PathBuf,
    errors: Vec<ConfigError>,
}

impl Diagnostics {
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        });
    }

    /// An error located in another file that this config references (a key, a registration document).
    pub fn error_in(&mut self, file: &Path, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn finish(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }
}
