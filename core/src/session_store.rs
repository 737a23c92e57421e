//! A tower-sessions store on Pier's database. Besides the opaque record it keeps the owning user,
//! user agent and address in columns, so an account page can list a user's sessions and an admin
//! can end them all at once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tower_sessions::{
    session::{Id, Record},
    session_store::{Error as StoreError, Result as StoreResult},
    SessionStore,
};

use crate::{db::Db, now, repo::sessions};

/// The session key holding who signed in.
pub const AUTH_KEY: &str = "pier.auth";
/// The session key holding the CSRF token.
pub const CSRF_KEY: &str = "pier.csrf";

/// What a signed-in session carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthData {
    pub user_id: i64,
    pub signed_in_at: i64,
    /// When the session's idle expiry was last pushed back.
    pub refreshed_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        DbSessionStore { db }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The record's data as stored, and who it belongs to.
fn encode(record: &Record) -> StoreResult<(String, Option<AuthData>)> {
    let data =
        serde_json::to_string(&record.data).map_err(|e| StoreError::Encode(e.to_string()))?;
    let auth = record
        .data
        .get(AUTH_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    Ok((data, auth))
}

fn owner(auth: &Option<AuthData>) -> sessions::Owner<'_> {
    sessions::Owner {
        user_id: auth.as_ref().map(|a| a.user_id),
        user_agent: auth.as_ref().and_then(|a| a.user_agent.as_deref()),
        ip: auth.as_ref().and_then(|a| a.ip.as_deref()),
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> StoreResult<()> {
        let (data, auth) = encode(record)?;
        let owner = owner(&auth);
        // 128 random bits collide essentially never, but a collision must not hand one person
        // another's session: draw a new id until the insert succeeds.
        loop {
            let inserted = sessions::insert(
                &self.db,
                &record.id.to_string(),
                &data,
                record.expiry_date.unix_timestamp(),
                &owner,
                now(),
            )
            .await
            .map_err(backend)?;
            if inserted {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> StoreResult<()> {
        let (data, auth) = encode(record)?;
        let owner = owner(&auth);
        sessions::update(
            &self.db,
            &record.id.to_string(),
            &data,
            record.expiry_date.unix_timestamp(),
            &owner,
            now(),
        )
        .await
        .map_err(backend)
    }

    async fn load(&self, id: &Id) -> StoreResult<Option<Record>> {
        let Some((data, expires_at)) = sessions::load(&self.db, &id.to_string(), now())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&data).map_err(|e| StoreError::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(expires_at)
            .map_err(|e| StoreError::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> StoreResult<()> {
        sessions::delete(&self.db, &id.to_string())
            .await
            .map_err(backend)
    }
}
