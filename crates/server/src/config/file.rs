//! `--config FILE` (or `PALAVER_CONFIG`): settings from a TOML file.
//!
//! Precedence is flags > environment variables > file > defaults. The file
//! is read before the command line is parsed, and each of its settings
//! becomes the default of the flag of the same name; clap then takes a
//! flag over its variable over that default, as for any other default.
//!
//! Keys are the flags' names without the dashes, with `-` or `_`
//! (`database-url` or `database_url`); values are strings, numbers, or a
//! list of strings (joined with commas, for `allowed-origins`). An unknown
//! key is an error naming it, as an unknown flag is.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;

/// The flag and the variable naming the file.
pub const FLAG: &str = "--config";
pub const ENV: &str = "PALAVER_CONFIG";

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the config file {path} sets `{key}`, which is not a setting (`palaver serve --help` lists them)")]
    Unknown { path: PathBuf, key: String },
    #[error("the config file {path} sets `{key}` to {found}; expected a string, a number or a list of strings")]
    Value {
        path: PathBuf,
        key: String,
        found: String,
    },
}

/// The file named on the command line (`--config F`, `--config=F`) or,
/// failing that, by `PALAVER_CONFIG`.
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == FLAG {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The file's settings as `(flag name, value)`.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, FileError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FileError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
    let mut settings = Vec::with_capacity(table.len());
    for (key, value) in table {
        let text = match &value {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(n) => Some(n.to_string()),
            toml::Value::Float(n) => Some(n.to_string()),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            _ => None,
        };
        let Some(text) = text else {
            return Err(FileError::Value {
                path: path.to_path_buf(),
                key,
                found: value.type_str().to_string(),
            });
        };
        settings.push((key.replace('_', "-"), text));
    }
    Ok(settings)
}

/// Makes each setting the default of its flag in `command` and in every
/// subcommand that has that flag. A key that no subcommand knows (or
/// `config` itself) is refused.
pub fn apply(
    mut command: Command,
    path: &Path,
    settings: &[(String, String)],
) -> Result<Command, FileError> {
    let names = super::Config::setting_names();
    for (key, value) in settings {
        let mut found = false;
        // Only `serve`'s settings: not `config` itself, nor the arguments
        // of one command (`admin user list --limit`).
        if key != "config" && names.contains(key) {
            // Parsed once per process: the defaults may borrow for its lifetime.
            let value: &'static str = Box::leak(value.clone().into_boxed_str());
            let secret = SECRETS.contains(&key.as_str());
            command = set_default(command, key, value, secret, &mut found);
        }
        if !found {
            return Err(FileError::Unknown {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
    }
    Ok(command)
}

/// Settings whose value `--help` must not print as a default.
const SECRETS: [&str; 3] = ["jwt-secret", "database-url", "redis-url"];

fn set_default(
    command: Command,
    key: &str,
    value: &'static str,
    secret: bool,
    found: &mut bool,
) -> Command {
    let id = command
        .get_arguments()
        .find(|a| a.get_long() == Some(key))
        .map(|a| a.get_id().clone());
    let mut command = match id {
        Some(id) => {
            *found = true;
            command.mut_arg(id, |a| a.default_value(value).hide_default_value(secret))
        }
        None => command,
    };
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |c| set_default(c, key, value, secret, found));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_dashes_or_underscores_and_values_become_flag_text() {
        let mut settings = parse(
            Path::new("p.toml"),
            "database_url = \"sqlite://x.db\"\nmessage-rate = 0\nallowed_origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .unwrap();
        settings.sort();
        assert_eq!(
            settings,
            [
                (
                    "allowed-origins".to_string(),
                    "https://a.example,https://b.example".to_string()
                ),
                ("database-url".to_string(), "sqlite://x.db".to_string()),
                ("message-rate".to_string(), "0".to_string()),
            ]
        );
    }

    #[test]
    fn a_table_or_bad_toml_is_refused_with_the_key_or_the_reason() {
        let e = parse(Path::new("p.toml"), "[server]\nlisten = 1\n").unwrap_err();
        assert!(e.to_string().contains("`server`"), "{e}");
        let e = parse(Path::new("p.toml"), "listen = \n").unwrap_err();
        assert!(matches!(e, FileError::Parse { .. }), "{e}");
    }

    #[test]
    fn the_file_names_its_flag_before_the_variable() {
        let args: Vec<OsString> = ["palaver", "serve", "--config", "a.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&args), Some(PathBuf::from("a.toml")));
        let args: Vec<OsString> = ["palaver", "--config=b.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&args), Some(PathBuf::from("b.toml")));
    }
}
