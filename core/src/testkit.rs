//! A panel on the in-memory engine for core's unit tests.

use std::sync::Arc;

use crate::{fake_runtime::FakeRuntime, model::Actor, secret::SecretKey, service::Settings, Pier};

/// A panel on a database of its own in a temporary file (removed with the returned guard), and
/// one user of `role` ("member" or "admin") signed in as the actor.
pub(crate) async fn panel_with_user(
    runtime: Arc<FakeRuntime>,
    role: &str,
) -> (Pier, Actor, TempDir) {
    let dir = std::env::temp_dir().join(format!(
        "pier-core-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = crate::db::open(&dir.join("pier.db")).await.unwrap();
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, role, max_apps, max_memory_mb, max_cpus_milli, created_at)
         VALUES ('m@example.com', ?, 5, 512, 1000, 0) RETURNING id",
    )
    .bind(role)
    .fetch_one(&db)
    .await
    .unwrap();
    let actor = crate::repo::users::by_id(&db, user)
        .await
        .unwrap()
        .unwrap()
        .into();
    let pier = Pier::new(db, SecretKey::generate(), Settings::default(), runtime);
    (pier, actor, TempDir(dir))
}

/// Removes its directory when dropped.
pub(crate) struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}
