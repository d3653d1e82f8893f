//! Edits the `signing_keys:` list of a config file in place, for `oada-gateway keys`: only the
//! lines that change are touched, so comments and layout elsewhere survive. The editor knows
//! block-style YAML only; the caller re-parses the result and compares it with the intended
//! document, so an edit this line-based view got wrong is refused rather than written.

use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum EditError {
    NoSigningKeys,
    NotBlockStyle(usize),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::NoSigningKeys => write!(f, "the file has no top-level `signing_keys:` list"),
            EditError::NotBlockStyle(line) => write!(
                f,
                "line {line}: `signing_keys` must be a block-style list (`- kid: ...` items with one field per line) to be edited; edit it by hand"
            ),
        }
    }
}

/// One `- kid: ...` item: lines `first..end` of the file.
#[derive(Debug, Clone, Copy)]
struct Item {
    first: usize,
    end: usize,
    /// Column of the item's fields (`kid`, `alg`, ...).
    field_indent: usize,
}

/// The file's lines, with the `signing_keys` items located.
pub struct SigningKeysEdit {
    lines: Vec<String>,
    newline: &'static str,
    items: Vec<Item>,
    item_indent: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The field named on `line` when it starts at `column` (after an item's `- `, or indented).
fn field_at<'l>(line: &'l str, column: usize) -> Option<&'l str> {
    let rest = line.get(column..)?;
    let (name, _) = rest.split_once(':')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(name)
}

impl SigningKeysEdit {
    pub fn parse(text: &str) -> Result<Self, EditError> {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let (items, item_indent) = locate(&lines)?;
        Ok(SigningKeysEdit {
            lines,
            newline,
            items,
            item_indent,
        })
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The line of `item` that holds `field`, if any.
    fn field_line(&self, item: Item, field: &str) -> Option<usize> {
        (item.first..item.end).find(|&i| {
            let line = &self.lines[i];
            (i == item.first || indent_of(line) == item.field_indent) && field_at(line, item.field_indent) == Some(field)
        })
    }

    /// Sets `field` of item `index` to the YAML scalar `value`: the line is rewritten when the
    /// field is there, else added after the item's last field.
    pub fn set_field(&mut self, index: usize, field: &str, value: &str) {
        let item = self.items[index];
        let value = scalar(value);
        match self.field_line(item, field) {
            Some(i) => {
                let prefix = self.lines[i][..item.field_indent].to_string();
                self.lines[i] = format!("{prefix}{field}: {value}");
            }
            None => {
                let line = format!("{}{field}: {value}", " ".repeat(item.field_indent));
                self.lines.insert(item.end, line);
                self.relocate();
            }
        }
    }

    /// Removes `field` from item `index` (its own line; never the item's first line).
    pub fn remove_field(&mut self, index: usize, field: &str) {
        let item = self.items[index];
        if let Some(i) = self.field_line(item, field).filter(|&i| i != item.first) {
            self.lines.remove(i);
            self.relocate();
        }
    }

    /// Appends an item with `fields` (name, scalar) after the last one, laid out like it.
    pub fn append_item(&mut self, fields: &[(&str, &str)]) {
        let (at, field_indent) = match self.items.last() {
            Some(last) => (last.end, last.field_indent),
            None => (header_line(&self.lines).map_or(self.lines.len(), |i| i + 1), self.item_indent + 2),
        };
        let dash = format!("{}-{}", " ".repeat(self.item_indent), " ".repeat(field_indent.saturating_sub(self.item_indent + 1).max(1)));
        for (n, (name, value)) in fields.iter().enumerate() {
            let prefix = if n == 0 { dash.clone() } else { " ".repeat(dash.len()) };
            self.lines.insert(at + n, format!("{prefix}{name}: {}", scalar(value)));
        }
        self.relocate();
    }

    /// Finds the items again after lines moved (the edits keep the layout `locate` accepted).
    fn relocate(&mut self) {
        (self.items, self.item_indent) = locate(&self.lines).expect("an edit keeps the list block-style");
    }

    pub fn text(&self) -> String {
        let mut out = self.lines.join(self.newline);
        out.push_str(self.newline);
        out
    }
}

fn header_line(lines: &[String]) -> Option<usize> {
    lines.iter().position(|l| {
        l.strip_prefix("signing_keys")
            .and_then(|rest| rest.trim_start().strip_prefix(':'))
            .is_some()
    })
}

/// The items of the `signing_keys:` block and their indentation.
fn locate(lines: &[String]) -> Result<(Vec<Item>, usize), EditError> {
    let start = header_line(lines).ok_or(EditError::NoSigningKeys)?;
    let after_colon = lines[start].split_once(':').map(|(_, r)| r.trim()).unwrap_or("");
    if !(after_colon.is_empty() || after_colon.starts_with('#')) {
        return Err(EditError::NotBlockStyle(start + 1));
    }
    // the list ends at the next line that starts in column 0 and is not an item
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = &lines[i];
            !l.trim().is_empty() && !l.starts_with([' ', '\t']) && !l.starts_with('-')
        })
        .unwrap_or(lines.len());
    let mut items: Vec<Item> = Vec::new();
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(start + 1) {
        if line.starts_with('\t') {
            return Err(EditError::NotBlockStyle(i + 1));
        }
        let indent = indent_of(line);
        let trimmed = &line[indent..];
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        if !is_item || item_indent.is_some_and(|at| at != indent) {
            continue;
        }
        item_indent = Some(indent);
        let after_dash = &trimmed[1..];
        let field_indent = if after_dash.trim().is_empty() {
            // `-` alone: the fields start on the next line
            match lines.get(i + 1) {
                Some(next) if indent_of(next) > indent => indent_of(next),
                _ => return Err(EditError::NotBlockStyle(i + 1)),
            }
        } else {
            let column = indent + 1 + indent_of(after_dash);
            if field_at(line, column).is_none() {
                return Err(EditError::NotBlockStyle(i + 1));
            }
            column
        };
        if let Some(last) = items.last_mut() {
            last.end = i;
        }
        items.push(Item {
            first: i,
            end,
            field_indent,
        });
    }
    // an item's trailing blank lines and comments belong to what follows it
    for item in &mut items {
        while item.end > item.first + 1 && is_blank_or_comment(&lines[item.end - 1]) {
            item.end -= 1;
        }
    }
    Ok((items, item_indent.unwrap_or(2)))
}

/// `value` as a YAML scalar, quoted when plain would read as something else.
fn scalar(value: &str) -> String {
    serde_yaml::to_string(value)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| format!("{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# the gateway\nissuer: http://127.0.0.1:8080\nsigning_keys:\n  - kid: gw-1\n    alg: ES256                 # RS256 | ES256 | EdDSA\n    private_key_file: keys/gw-1.pem\n\n  # rotated in December\n  - kid: gw-2\n    alg: ES256\n    private_key_file: keys/gw-2.pem\n    status: next\n\n# how long tokens live\ntoken_lifetime: 1h\n";

    fn tree(text: &str) -> serde_yaml::Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn sets_adds_and_removes_fields_keeping_everything_else() {
        let mut edit = SigningKeysEdit::parse(FILE).unwrap();
        assert_eq!(edit.item_count(), 2);
        edit.set_field(0, "status", "retired");
        edit.set_field(0, "retired_at", "2026-11-24T10:00:00Z");
        edit.set_field(1, "status", "active");
        let text = edit.text();
        assert!(text.contains("# RS256 | ES256 | EdDSA"), "{text}");
        assert!(text.contains("  # rotated in December\n  - kid: gw-2"), "{text}");
        assert!(text.ends_with("\n# how long tokens live\ntoken_lifetime: 1h\n"), "{text}");
        let t = tree(&text);
        let keys = t["signing_keys"].as_sequence().unwrap();
        assert_eq!(keys[0]["status"], "retired");
        assert_eq!(keys[0]["retired_at"], "2026-11-24T10:00:00Z");
        assert_eq!(keys[0]["private_key_file"], "keys/gw-1.pem");
        assert_eq!(keys[1]["status"], "active");
        assert_eq!(t["token_lifetime"], "1h");

        let mut edit = SigningKeysEdit::parse(&text).unwrap();
        edit.remove_field(0, "retired_at");
        edit.append_item(&[("kid", "gw-3"), ("alg", "EdDSA"), ("private_key_file", "keys/gw-3.pem"), ("status", "next")]);
        let t = tree(&edit.text());
        let keys = t["signing_keys"].as_sequence().unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys[0].get("retired_at").is_none());
        assert_eq!(keys[2]["kid"], "gw-3");
        assert_eq!(keys[2]["status"], "next");
        assert_eq!(t["token_lifetime"], "1h");
    }

    #[test]
    fn items_in_column_zero_and_dash_alone_lines() {
        let text = "signing_keys:\n- kid: a\n  alg: ES256\n  private_key_file: a.pem\n-\n  kid: b\n  alg: ES256\n  private_key_file: b.pem\nleeway: 30s\n";
        let mut edit = SigningKeysEdit::parse(text).unwrap();
        assert_eq!(edit.item_count(), 2);
        edit.set_field(1, "status", "next");
        edit.append_item(&[("kid", "c"), ("alg", "ES256")]);
        let t = tree(&edit.text());
        assert_eq!(t["signing_keys"][1]["status"], "next");
        assert_eq!(t["signing_keys"][2]["kid"], "c");
        assert_eq!(t["leeway"], "30s");
    }

    #[test]
    fn values_that_would_read_as_other_types_are_quoted() {
        let mut edit = SigningKeysEdit::parse(FILE).unwrap();
        edit.set_field(1, "kid", "true");
        edit.set_field(0, "kid", "a: b # c");
        let t = tree(&edit.text());
        assert_eq!(t["signing_keys"][1]["kid"], "true");
        assert_eq!(t["signing_keys"][0]["kid"], "a: b # c");
    }

    #[test]
    fn flow_style_and_missing_lists_are_refused() {
        assert_eq!(SigningKeysEdit::parse("signing_keys: [{kid: a}]\n").err(), Some(EditError::NotBlockStyle(1)));
        assert_eq!(
            SigningKeysEdit::parse("signing_keys:\n  - {kid: a, alg: ES256}\n").err(),
            Some(EditError::NotBlockStyle(2))
        );
        assert_eq!(SigningKeysEdit::parse("issuer: x\n").err(), Some(EditError::NoSigningKeys));
    }
}
