//! The operator's commands on the same binary, acting on the configured
//! database through the domain (`chat`): `palaver admin user|group|token`,
//! `palaver migrate` and `palaver config check`. Each prints JSON on
//! stdout (one object, or one per line for a list) and logs to stderr.
//!
//! A change made here reaches running nodes through the change log they
//! poll (credentials, group members), within a second; a group's system
//! message is stored (members read it in history and catch-up) but not
//! delivered live, as no socket is connected to this process.

use std::io::BufRead;
use std::time::Duration;

use clap::{Args, Subcommand};
use palaver_protocol::Role;
use serde_json::{json, Value};

use crate::chat::{Chat, ChatError, CredentialChange, GroupOp, Password, Username};
use crate::config::{Config, Source};
use crate::ids::{GroupId, UserId};
use crate::{open, preflight, store, Opened, StartError};

/// `palaver admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Users: create, list, show, disable, enable, set a password.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups: list, show, add or remove a member (in the owner's name).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Issues a token for a user (a bot, a support session), at their
    /// current token generation: logging out everywhere revokes it.
    Token {
        /// User id or username.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds, one minute to ten years (default:
        /// --token-ttl-secs).
        #[arg(long, value_parser = clap::value_parser!(u64).range(60..=10 * 365 * 24 * 3600))]
        ttl: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user. The password is read from stdin's first line with
    /// --password-stdin; without it one is generated and printed once.
    Create {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists users by id, JSON lines: `{user, disabled}`.
    List {
        /// Users with an id above this one (the last id of the last page).
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Shows a user (id or username).
    Show { user: String },
    /// Disables an account: its tokens fail and its sockets are ended on
    /// every node within a second; it cannot log in.
    Disable { user: String },
    /// Enables an account again (its earlier tokens stay revoked).
    Enable { user: String },
    /// Sets a new password (stdin's first line with --password-stdin, else
    /// generated and printed once); every earlier token is revoked.
    SetPassword {
        user: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Lists groups by id, JSON lines: `{group, members}` (a count).
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Shows a group with its members.
    Show { group: i64 },
    /// Adds a user (id or username) as a member or an admin.
    AddMember {
        group: i64,
        user: String,
        #[arg(long, default_value = "member", value_parser = ["member", "admin"])]
        role: String,
    },
    /// Removes a member.
    RemoveMember { group: i64, user: String },
}

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{code}: {0}", code = .0.code().as_str())]
    Chat(#[from] ChatError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Check(String),
}

/// Runs `palaver admin …`. It acts on a database at this binary's
/// migrations only: it never migrates one (that is `palaver migrate`).
pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let config = &args.config;
    preflight::check_database_url(&config.database_url).map_err(StartError::from)?;
    let probe = store::probe(&config.database_url, config.db_acquire_timeout())
        .await
        .map_err(StartError::from)?;
    if probe.applied != probe.known {
        return Err(AdminError::Check(format!(
            "the database has {} of the {} migrations this binary knows: {}",
            probe.applied,
            probe.known,
            if probe.applied < probe.known {
                "run `palaver migrate` first (or start the server)"
            } else {
                "it was migrated by a newer version; use that version's palaver"
            }
        )));
    }
    let Opened { chat, tokens, .. } = open(config).await?;
    let result = match args.command {
        AdminCommand::User(command) => user(&chat, command).await,
        AdminCommand::Group(command) => group(&chat, command).await,
        AdminCommand::Token { user, ttl } => {
            let user = find_user(&chat, &user).await?;
            let id = UserId::from_stored(user.id);
            let generation = chat.token_generation(id).await?;
            let ttl = ttl.map_or(tokens.ttl(), Duration::from_secs);
            print(&json!({
                "user": user,
                "token": tokens.issue_for(id, generation, ttl),
                "expires_in": ttl.as_secs(),
            }));
            Ok(())
        }
    };
    chat.drain().await;
    result
}

async fn user(chat: &Chat, command: UserCommand) -> Result<(), AdminError> {
    match command {
        UserCommand::Create {
            username,
            password_stdin,
        } => {
            let username = Username::parse(&username)?;
            let (password, generated) = password(password_stdin)?;
            let user = chat.register(username, password.clone()).await?;
            let mut out = json!({ "user": user });
            if generated {
                out["password"] = password.as_str().into();
            }
            print(&out);
        }
        UserCommand::List { after, limit } => {
            for (user, disabled) in chat.list_users(after, limit).await? {
                print(&json!({ "user": user, "disabled": disabled }));
            }
        }
        UserCommand::Show { user } => {
            let user = find_user(chat, &user).await?;
            let disabled = chat.account_disabled(UserId::from_stored(user.id)).await?;
            print(&json!({ "user": user, "disabled": disabled }));
        }
        UserCommand::Disable { user } => {
            change(chat, &user, CredentialChange::Disabled(true)).await?
        }
        UserCommand::Enable { user } => {
            change(chat, &user, CredentialChange::Disabled(false)).await?
        }
        UserCommand::SetPassword {
            user,
            password_stdin,
        } => {
            let user = find_user(chat, &user).await?;
            let (password, generated) = password(password_stdin)?;
            let hash = crate::auth::hash_password(password.as_str().to_string()).await;
            let id = UserId::from_stored(user.id);
            let generation = chat
                .change_credentials(id, &CredentialChange::Password(hash))
                .await?;
            let mut out = json!({ "user": user, "token_generation": generation });
            if generated {
                out["password"] = password.as_str().into();
            }
            print(&out);
        }
    }
    Ok(())
}

/// Applies a credential change to a user and prints it.
async fn change(chat: &Chat, user: &str, change: CredentialChange) -> Result<(), AdminError> {
    let user = find_user(chat, user).await?;
    let generation = chat
        .change_credentials(UserId::from_stored(user.id), &change)
        .await?;
    let disabled = change == CredentialChange::Disabled(true);
    print(&json!({ "user": user, "disabled": disabled, "token_generation": generation }));
    Ok(())
}

async fn group(chat: &Chat, command: GroupCommand) -> Result<(), AdminError> {
    match command {
        GroupCommand::List { after, limit } => {
            for (group, members) in chat.list_groups(after, limit).await? {
                print(&json!({ "group": group, "members": members }));
            }
        }
        GroupCommand::Show { group } => {
            print(&json!(chat.group_for_operator(group_id(group)?).await?));
        }
        GroupCommand::AddMember { group, user, role } => {
            let user = UserId::from_stored(find_user(chat, &user).await?.id);
            let role = if role == "admin" {
                Role::Admin
            } else {
                Role::Member
            };
            let message = chat
                .change_group_for_operator(group_id(group)?, GroupOp::Add { user, role })
                .await?;
            print(&json!({ "system_message": message }));
        }
        GroupCommand::RemoveMember { group, user } => {
            let user = UserId::from_stored(find_user(chat, &user).await?.id);
            let message = chat
                .change_group_for_operator(group_id(group)?, GroupOp::Remove { user })
                .await?;
            print(&json!({ "system_message": message }));
        }
    }
    Ok(())
}

fn group_id(id: i64) -> Result<GroupId, AdminError> {
    GroupId::parse(id).map_err(|_| AdminError::Input(format!("{id} is not a group id")))
}

/// A user by id (digits) or username.
async fn find_user(chat: &Chat, user: &str) -> Result<palaver_protocol::User, AdminError> {
    match user.parse::<i64>() {
        Ok(id) => {
            let id = UserId::parse(id)
                .map_err(|_| AdminError::Input(format!("{id} is not a user id")))?;
            Ok(chat.user(id).await?)
        }
        Err(_) => Ok(chat.user_named(user).await?),
    }
}

/// The password from stdin's first line, or a generated one (and whether
/// it was generated).
fn password(from_stdin: bool) -> Result<(Password, bool), AdminError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| AdminError::Input(format!("cannot read the password from stdin: {e}")))?;
        let line = line.trim_end_matches(['\r', '\n']);
        return Ok((Password::parse(line)?, false));
    }
    let generated = crate::auth::random_secret()
        .chars()
        .take(20)
        .collect::<String>();
    Ok((Password::parse(&generated)?, true))
}

fn print(value: &Value) {
    println!("{value}");
}

/// Runs `palaver migrate`: applies the migrations and says where the
/// database stands.
pub async fn migrate(config: &Config) -> Result<(), AdminError> {
    preflight::check_database_url(&config.database_url).map_err(StartError::from)?;
    let pool = store::PoolOptions {
        max_connections: 1,
        acquire_timeout: config.db_acquire_timeout(),
    };
    drop(
        store::connect(&config.database_url, &pool)
            .await
            .map_err(StartError::from)?,
    );
    let probe = store::probe(&config.database_url, config.db_acquire_timeout())
        .await
        .map_err(StartError::from)?;
    print(&json!({
        "database": probe.backend,
        "migrations_applied": probe.applied,
        "migrations_known": probe.known,
    }));
    Ok(())
}

/// Runs `palaver config check`: prints every setting with where it came
/// from (secrets masked), then checks that the database and Redis answer,
/// changing nothing. Fails if either does not.
pub async fn check_config(
    config: &Config,
    settings: Vec<(String, String, Source)>,
) -> Result<(), AdminError> {
    let settings: serde_json::Map<String, Value> = settings
        .into_iter()
        .map(|(key, value, source)| {
            let source = match source {
                Source::Flag => "flag",
                Source::Environment => "environment",
                Source::File => "file",
                Source::Default => "default",
            };
            (key, json!({ "value": value, "source": source }))
        })
        .collect();
    let mut problems = Vec::new();
    let database = match preflight::check_database_url(&config.database_url) {
        Err(e) => {
            problems.push(e.to_string());
            json!({ "ok": false, "error": e.to_string() })
        }
        Ok(()) => match store::probe(&config.database_url, config.db_acquire_timeout()).await {
            Ok(p) => json!({
                "ok": true,
                "backend": p.backend,
                "exists": p.exists,
                "migrations_applied": p.applied,
                "migrations_known": p.known,
            }),
            Err(e) => {
                problems.push(e.to_string());
                json!({ "ok": false, "error": e.to_string() })
            }
        },
    };
    let redis = match &config.redis_url {
        None => Value::Null,
        Some(url) => match preflight::check_redis(url).await {
            Ok(()) => json!({ "ok": true }),
            Err(e) => {
                problems.push(e.to_string());
                json!({ "ok": false, "error": e.to_string() })
            }
        },
    };
    print(&json!({ "settings": settings, "database": database, "redis": redis }));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Check(problems.join("; ")))
    }
}
