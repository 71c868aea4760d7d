//! `jiaoying user add|list|disable|passwd`: console users from the command line. Adding,
//! disabling and changing a password are each one unit of work with their ledger entry
//! (`user.added`, `user.disabled`, `user.password`), naming who did it. Passwords are read
//! here (a file, or the terminal without echo) and hashed by `http::session`; this module
//! must not print or log a password nor write SQL itself.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::Role;
use crate::domain::password::{hash_password, password_problem};
use crate::store::{users, Store};

/// Who runs the command, for the ledger: `cli:` and the OS user, or `cli`.
pub fn cli_actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(u) if !u.trim().is_empty() => format!("cli:{}", u.trim()),
        _ => "cli".into(),
    }
}

/// The roles a console user may have.
pub fn console_role(s: &str) -> Result<Role, String> {
    match Role::parse(s) {
        Some(r @ (Role::Admin | Role::Operator | Role::Viewer)) => Ok(r),
        _ => Err(format!(
            "角色须为 admin、operator 或 viewer; role must be admin, operator or viewer (got {s:?})"
        )),
    }
}

/// A new password: the file's first line, or asked twice on the terminal without echo (one
/// line from standard input when it is not a terminal). Refused when empty or short.
pub fn read_password(file: Option<&Path>) -> Result<String> {
    let pw = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            text.lines().next().unwrap_or("").to_string()
        }
        None if std::io::stdin().is_terminal() => {
            let a = ask_hidden("新密码 New password: ")?;
            if let Some(p) = password_problem(&a) {
                bail!("{p}");
            }
            let b = ask_hidden("再输一次 Again: ")?;
            if a != b {
                bail!("两次输入的密码不一致 the two passwords differ");
            }
            a
        }
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if let Some(p) = password_problem(&pw) {
        bail!("{p}");
    }
    Ok(pw)
}

/// One line from the terminal with echo off (`stty -echo`, restored after, even on error).
fn ask_hidden(prompt: &str) -> Result<String> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
    }
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn add(store: &Store, name: &str, role: Role, password: String, by: &str, now: i64) -> Result<()> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("用户名不能为空或含空白 the name must not be empty or contain spaces ({name:?})");
    }
    let hash = hash_password(password).await?;
    let mut tx = store.begin().await?;
    if !tx.add_user(name, role, &hash, by, now).await? {
        bail!("用户 {name} 已存在 user {name:?} exists already (change its password with `jiaoying user passwd {name}`)");
    }
    tx.record(
        "user.added",
        format!("user:{name}"),
        serde_json::json!({"name": name, "role": role.as_str(), "by": by}),
        now,
    )
    .await?;
    tx.commit().await
}

pub async fn disable(store: &Store, name: &str, by: &str, now: i64) -> Result<()> {
    let mut tx = store.begin().await?;
    if !tx.disable_user(name).await? {
        bail!("没有用户 {name} no user {name:?}");
    }
    tx.record(
        "user.disabled",
        format!("user:{name}"),
        serde_json::json!({"name": name, "by": by}),
        now,
    )
    .await?;
    tx.commit().await
}

pub async fn passwd(store: &Store, name: &str, password: String, by: &str, now: i64) -> Result<()> {
    if users::user(store, name).await?.is_none() {
        bail!("没有用户 {name} no user {name:?}");
    }
    let hash = hash_password(password).await?;
    let mut tx = store.begin().await?;
    if !tx.set_password(name, &hash).await? {
        bail!("没有用户 {name} no user {name:?}");
    }
    tx.record(
        "user.password",
        format!("user:{name}"),
        serde_json::json!({"name": name, "by": by}),
        now,
    )
    .await?;
    tx.commit().await
}

/// `jiaoying user list`: one line per user.
pub async fn list(store: &Store) -> Result<String> {
    let mut out = String::from("用户 name\t角色 role\t状态 state\t创建 created by\n");
    for u in users::list(store).await? {
        let state = if u.disabled {
            "停用 disabled"
        } else {
            "启用 active"
        };
        out.push_str(&format!(
            "{}\t{}\t{state}\t{}\n",
            u.name,
            u.role.as_str(),
            u.created_by
        ));
    }
    Ok(out)
}
