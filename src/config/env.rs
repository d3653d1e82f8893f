//! `${VAR}` and `${VAR:-default}` in config values, replaced from the environment.
//!
//! Expansion runs on the parsed YAML tree rather than the text, so a value can never change the
//! document's structure, and an unset variable is reported at the key that uses it.

use serde_yaml::Value;

/// Where variables come from; the process environment in production, a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Expands every string scalar below `value`; returns `(key path, message)` for each failure.
pub fn expand_tree(value: &mut Value, env: &dyn Environment) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    walk(value, String::new(), env, &mut errors);
    errors
}

fn walk(value: &mut Value, path: String, env: &dyn Environment, errors: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) if text.contains("${") => match expand_str(text, env) {
            Ok(expanded) => {
                // A value that was exactly one `${VAR}` takes the type the variable's text reads as,
                // so `threads: ${THREADS}` is still a number.
                let whole = text.trim().starts_with("${") && text.trim().ends_with('}') && text.matches("${").count() == 1;
                *value = if whole {
                    match serde_yaml::from_str::<Value>(&expanded) {
                        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                        _ => Value::String(expanded),
                    }
                } else {
                    Value::String(expanded)
                };
            }
            Err(message) => errors.push((path, message)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let name = match key {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                let child = if path.is_empty() { name } else { format!("{path}.{name}") };
                walk(item, child, env, errors);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, errors),
        _ => {}
    }
}

/// Expands `${NAME}` and `${NAME:-default}` in one string. `$${` is a literal `${`.
pub fn expand_str(text: &str, env: &dyn Environment) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body_and_rest) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let end = body_and_rest
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in `{text}`; write ${{NAME}} or ${{NAME:-default}}"))?;
        let body = &body_and_rest[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{body}}}` is not a valid variable reference; names use letters, digits and _"
            ));
        }
        match (env.var(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
                ))
            }
        }
        rest = &body_and_rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "HOST" => Some("127.0.0.1".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_defaults() {
        assert_eq!(expand_str("${HOST}:${PORT}", &env).unwrap(), "127.0.0.1:8080");
        assert_eq!(expand_str("${MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(expand_str("cost $5 $${HOST}", &env).unwrap(), "cost $5 ${HOST}");
    }

    #[test]
    fn reports_missing_and_malformed() {
        assert!(expand_str("${MISSING}", &env).unwrap_err().contains("MISSING is not set"));
        assert!(expand_str("${HOST", &env).unwrap_err().contains("unterminated"));
        assert!(expand_str("${a b}", &env).is_err());
    }

    #[test]
    fn whole_value_keeps_scalar_type_and_errors_name_the_key() {
        let mut v: Value = serde_yaml::from_str("server:\n  threads: ${PORT}\nroutes:\n  - path: ${NOPE}\n").unwrap();
        let errors = expand_tree(&mut v, &env);
        assert_eq!(v["server"]["threads"], Value::Number(8080.into()));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "routes[0].path");
    }
}
