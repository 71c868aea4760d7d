//! Console users, their sessions and failed-login counts (`users`, `sessions`,
//! `login_failures`). Adding, disabling and re-passwording a user are units of work ([`Tx`])
//! so the ledger records them in the same transaction; sessions and failure counts are single
//! statements on the store (losing one only logs someone out or forgives a failure).
//!
//! This file must not hash, compare or decide anything: passwords arrive as argon2 PHC
//! strings, session ids as their SHA-256, and the expiry and lockout rules are the caller's
//! (`http::session`, `http::login`).

use anyhow::{Context, Result};

use super::{Store, Tx};
use crate::config::Role;

/// A console user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The argon2 PHC string.
    pub hash: String,
    pub disabled: bool,
    pub created_at: i64,
    pub created_by: String,
}

/// A live session row joined with its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
}

/// A name's failed logins in a row and until when it is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: i64,
    pub locked_until: i64,
}

type UserRow = (String, String, String, i64, i64, String);
type SessionRow = (String, String, String, i64, i64, String, String, i64, i64, i64);

const USER_COLUMNS: &str = "name, role, hash, disabled, created_at, created_by";

fn user_of(r: UserRow) -> Result<User> {
    let (name, role, hash, disabled, created_at, created_by) = r;
    let role = Role::parse(&role).with_context(|| format!("users row {name:?}: role {role:?}"))?;
    Ok(User {
        name,
        role,
        hash,
        disabled: disabled != 0,
        created_at,
        created_by,
    })
}

impl Tx {
    /// Adds a user; false (and nothing written) when the name is taken.
    pub async fn add_user(&mut self, name: &str, role: Role, hash: &str, by: &str, now: i64) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO users (name, role, hash, disabled, created_at, created_by) VALUES ($1, $2, $3, 0, $4, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(now)
        .bind(by)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Disables a user and ends their sessions; false when no such user.
    pub async fn disable_user(&mut self, name: &str) -> Result<bool> {
        let n = sqlx::query("UPDATE users SET disabled = 1 WHERE name = $1")
            .bind(name)
            .execute(self.conn())
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Replaces a user's password hash and ends their sessions; false when no such user.
    pub async fn set_password(&mut self, name: &str, hash: &str) -> Result<bool> {
        let n = sqlx::query("UPDATE users SET hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(self.conn())
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(self.conn())
            .await?;
        Ok(n == 1)
    }
}

pub async fn user(store: &Store, name: &str) -> Result<Option<User>> {
    let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *store.conn().await?)
        .await?;
    row.map(user_of).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<User>> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
        .fetch_all(&mut *store.conn().await?)
        .await?;
    rows.into_iter().map(user_of).collect()
}

/// A new session, known by the SHA-256 (hex) of its cookie value.
pub async fn create_session(
    store: &Store,
    id_hash: &str,
    user: &str,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_name, csrf, created_at, last_seen, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(id_hash)
    .bind(user)
    .bind(csrf)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *store.conn().await?)
    .await?;
    Ok(())
}

/// The session with this id hash and its user, whatever its age (the caller judges it).
pub async fn session(store: &Store, id_hash: &str) -> Result<Option<Session>> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT u.name, u.role, u.hash, u.disabled, u.created_at, u.created_by,
                s.csrf, s.created_at, s.last_seen, s.expires_at
         FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(&mut *store.conn().await?)
    .await?;
    let Some((name, role, hash, disabled, uc, ub, csrf, created_at, last_seen, expires_at)) = row else {
        return Ok(None);
    };
    Ok(Some(Session {
        user: user_of((name, role, hash, disabled, uc, ub))?,
        csrf,
        created_at,
        last_seen,
        expires_at,
    }))
}

pub async fn touch_session(store: &Store, id_hash: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
        .bind(now)
        .bind(id_hash)
        .execute(&mut *store.conn().await?)
        .await?;
    Ok(())
}

pub async fn delete_session(store: &Store, id_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *store.conn().await?)
        .await?;
    Ok(())
}

pub async fn failures(store: &Store, name: &str) -> Result<Failures> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT failures, locked_until FROM login_failures WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *store.conn().await?)
            .await?;
    Ok(row
        .map(|(count, locked_until)| Failures { count, locked_until })
        .unwrap_or_default())
}

/// Counts one more failure for `name` and returns the count now.
pub async fn record_failure(store: &Store, name: &str, now: i64) -> Result<i64> {
    let n: i64 = sqlx::query_scalar(
        "INSERT INTO login_failures (name, failures, last_at, locked_until) VALUES ($1, 1, $2, 0)
         ON CONFLICT (name) DO UPDATE SET failures = login_failures.failures + 1, last_at = excluded.last_at
         RETURNING failures",
    )
    .bind(name)
    .bind(now)
    .fetch_one(&mut *store.conn().await?)
    .await?;
    Ok(n)
}

/// Refuses `name` until `until` and starts its count again (a locked name that fails again
/// after the lock is locked again only after as many new failures).
pub async fn lock(store: &Store, name: &str, until: i64) -> Result<()> {
    sqlx::query("UPDATE login_failures SET locked_until = $1, failures = 0 WHERE name = $2")
        .bind(until)
        .bind(name)
        .execute(&mut *store.conn().await?)
        .await?;
    Ok(())
}

pub async fn clear_failures(store: &Store, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE name = $1")
        .bind(name)
        .execute(&mut *store.conn().await?)
        .await?;
    Ok(())
}
