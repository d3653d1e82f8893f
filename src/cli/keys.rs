//! `oada-gateway keys add` and `oada-gateway keys rotate`: the signing-key lifecycle
//! (next → active → retired), written into the config file for the next reload.
//!
//! Each command edits only the `signing_keys` lines it changes, checks that the edited file
//! parses to exactly the intended document, validates it as the gateway would load it, and
//! replaces the file atomically; on any doubt it writes nothing.

use crate::config::edit::SigningKeysEdit;
use crate::config::env::ProcessEnv;
use crate::config::Config;
use crate::keys::{self, generate, KeyStatus, SigningKey};
use crate::oauth::jwks::MAX_AGE_SECS;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A refusal: what is wrong and what to do.
struct Refusal(String);

impl<T: std::fmt::Display> From<T> for Refusal {
    fn from(e: T) -> Self {
        Refusal(e.to_string())
    }
}

/// The config file and its signing keys as written.
struct KeysFile {
    path: PathBuf,
    text: String,
    tree: Value,
    /// Each key's kid and status (an omitted status read as the loader reads it).
    keys: Vec<(String, KeyStatus)>,
}

impl KeysFile {
    fn read(path: &Path) -> Result<Self, Refusal> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let tree: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
        let list = tree
            .get("signing_keys")
            .and_then(Value::as_sequence)
            .ok_or_else(|| format!("{}: no `signing_keys` list", path.display()))?;
        let status_of = |item: &Value| item.get("status").and_then(Value::as_str).map(str::to_string);
        let any_active = list.iter().any(|k| status_of(k).as_deref() == Some("active"));
        let mut keys = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let kid = item.get("kid").and_then(Value::as_str).unwrap_or_default().to_string();
            let status = match status_of(item) {
                None => KeyStatus::omitted(i == 0, any_active),
                Some(name) => KeyStatus::parse(&name).ok_or_else(|| {
                    format!("signing_keys[{i}].status: `{name}` is not a key status; fix the file first (oada-gateway check)")
                })?,
            };
            keys.push((kid, status));
        }
        Ok(KeysFile {
            path: path.to_path_buf(),
            text,
            tree,
            keys,
        })
    }

    fn index_of(&self, status: KeyStatus) -> Vec<usize> {
        (0..self.keys.len()).filter(|&i| self.keys[i].1 == status).collect()
    }

    /// Checks `edited` (the text after the line edits) against `intended` (the document the edits
    /// meant), validates it as the gateway would load it, and replaces the file.
    fn write(&self, edited: &str, intended: &Value) -> Result<(), Refusal> {
        let parsed: Value = serde_yaml::from_str(edited).map_err(|e| format!("the edited file would not parse ({e}); nothing written"))?;
        if &parsed != intended {
            return Err(Refusal(format!(
                "{}: the edit would change more than signing_keys (unusual layout?); nothing written, edit it by hand",
                self.path.display()
            )));
        }
        if let Err(errors) = Config::from_yaml(edited, &self.path, &ProcessEnv) {
            return Err(Refusal(format!("the edited config would not load; nothing written:\n{errors}")));
        }
        replace_file(&self.path, edited.as_bytes()).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        Ok(())
    }

    /// The parsed document with each (item, field, value) of `changes` set in `signing_keys`.
    fn intended(&self, changes: &[(usize, &str, &str)]) -> Value {
        let mut tree = self.tree.clone();
        let list = tree["signing_keys"].as_sequence_mut().expect("read checked it is a list");
        for (index, name, value) in changes {
            if let Some(item) = list[*index].as_mapping_mut() {
                item.insert(Value::from(*name), Value::from(*value));
            }
        }
        tree
    }
}

/// Writes `bytes` to a temporary file beside `path` (with its permissions) and renames it over
/// `path`, so a reader sees the old file or the new one, never half of one.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let target = std::fs::canonicalize(path)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("gateway.yaml");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.set_permissions(std::fs::metadata(&target)?.permissions())?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn report(command: &str, result: Result<String, Refusal>) -> i32 {
    match result {
        Ok(done) => {
            println!("{done}");
            0
        }
        Err(Refusal(why)) => {
            eprintln!("keys {command}: {why}");
            1
        }
    }
}

/// `keys add`: generates a key and adds it to the ring as `next` (published, not signing).
pub fn add(config: &Path, kid: &str, alg: &str, out: Option<&Path>) -> i32 {
    report("add", add_key(config, kid, alg, out))
}

fn add_key(config: &Path, kid: &str, alg: &str, out: Option<&Path>) -> Result<String, Refusal> {
    let algorithm = keys::parse_signing_alg(alg).ok_or_else(|| format!("unsupported --alg {alg}; expected RS256, ES256 or EdDSA"))?;
    if kid.is_empty() || !kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(Refusal(format!("--kid `{kid}`: use letters, digits, `-`, `_` and `.`")));
    }
    let file = KeysFile::read(config)?;
    if file.keys.iter().any(|(k, _)| k == kid) {
        return Err(Refusal(format!("a key with kid `{kid}` is already in signing_keys")));
    }
    if let Some(&next) = file.index_of(KeyStatus::Next).first() {
        return Err(Refusal(format!(
            "`{}` is already the next key; rotate it in first (oada-gateway keys rotate)",
            file.keys[next].0
        )));
    }
    let written_as = out.map_or_else(|| format!("keys/{kid}.pem"), |p| p.to_string_lossy().into_owned());
    let key_path = match Path::new(&written_as) {
        p if p.is_absolute() => p.to_path_buf(),
        p => config.parent().unwrap_or(Path::new(".")).join(p),
    };

    let fields = [("kid", kid), ("alg", alg), ("private_key_file", written_as.as_str()), ("status", "next")];
    let mut edit = SigningKeysEdit::parse(&file.text)?;
    edit.append_item(&fields);
    let mut intended = file.tree.clone();
    let mut item = Mapping::new();
    for (name, value) in fields {
        item.insert(Value::from(name), Value::from(value));
    }
    intended["signing_keys"]
        .as_sequence_mut()
        .expect("read checked it is a list")
        .push(Value::Mapping(item));

    let pem = generate::private_key_pem(algorithm)?;
    SigningKey::from_pem(kid, algorithm, pem.as_bytes())?;
    super::keygen::write_private(&key_path, pem.as_bytes()).map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    if let Err(refusal) = file.write(&edit.text(), &intended) {
        let _ = std::fs::remove_file(&key_path);
        return Err(refusal);
    }
    Ok(format!(
        "added `{kid}` ({alg}, {}) as the next key: published at /jwks once the gateway reloads, not signing yet.\n\
         Next: reload every replica (SIGHUP or POST /reload), wait at least {} minutes (clients cache /jwks that long), then run `oada-gateway keys rotate`.",
        key_path.display(),
        MAX_AGE_SECS / 60
    ))
}

/// `keys rotate`: the next key becomes active, the active one retired as of `now`.
pub fn rotate(config: &Path, kid: Option<&str>, now: SystemTime) -> i32 {
    report("rotate", rotate_keys(config, kid, now))
}

fn rotate_keys(config: &Path, kid: Option<&str>, now: SystemTime) -> Result<String, Refusal> {
    let file = KeysFile::read(config)?;
    let nexts = file.index_of(KeyStatus::Next);
    let next = match (kid, nexts.as_slice()) {
        (Some(kid), _) => *nexts
            .iter()
            .find(|&&i| file.keys[i].0 == kid)
            .ok_or_else(|| format!("`{kid}` is not a next key in signing_keys"))?,
        (None, [one]) => *one,
        (None, []) => {
            return Err(Refusal(
                "no key is `next`: add one with `oada-gateway keys add --kid NEW --alg ES256`, reload, wait for clients to fetch /jwks, then rotate".into(),
            ))
        }
        (None, _) => {
            let kids: Vec<&str> = nexts.iter().map(|&i| file.keys[i].0.as_str()).collect();
            return Err(Refusal(format!("several keys are next ({}); say which with --kid", kids.join(", "))));
        }
    };
    let active = file.index_of(KeyStatus::Active);
    let [active] = active.as_slice() else {
        return Err(Refusal("signing_keys needs exactly one active key; fix the file first (oada-gateway check)".into()));
    };
    let retired_at = humantime::format_rfc3339_seconds(now).to_string();

    // Every status is written out: with an explicit `active`, an omitted one would read `next`.
    let mut edit = SigningKeysEdit::parse(&file.text)?;
    if edit.item_count() != file.keys.len() {
        return Err(Refusal("the signing_keys lines could not be told apart; edit the file by hand".into()));
    }
    let mut changes: Vec<(usize, &str, &str)> = Vec::new();
    for (i, (_, status)) in file.keys.iter().enumerate() {
        if i == next {
            changes.push((i, "status", "active"));
        } else if i == *active {
            changes.push((i, "status", "retired"));
            changes.push((i, "retired_at", &retired_at));
        } else {
            changes.push((i, "status", status.name()));
        }
    }
    for (i, name, value) in &changes {
        edit.set_field(*i, name, value);
    }
    file.write(&edit.text(), &file.intended(&changes))?;
    let config = Config::load(config).map_err(|e| e.to_string())?;
    Ok(format!(
        "`{}` is now active (signs); `{}` retired at {retired_at}.\nNext: reload every replica (SIGHUP or POST /reload).\n{}",
        file.keys[next].0,
        file.keys[*active].0,
        super::check::key_lines(&config)
    ))
}
