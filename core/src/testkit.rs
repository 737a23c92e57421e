//! A panel on the in-memory engine, for unit tests here and in the server's engine.

use std::sync::Arc;

use crate::{fake_runtime::FakeRuntime, model::Actor, secret::SecretKey, service::Settings, Pier};

/// A panel with `settings` on a database of its own in a temporary file (removed with the
/// returned guard), and one user of `role` ("member" or "admin", room for 5 apps, 2 GiB and 4
/// CPUs) as the actor.
pub async fn panel_with_user(
    runtime: Arc<FakeRuntime>,
    role: &str,
    settings: Settings,
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
         VALUES ('m@example.com', ?, 5, 2048, 4000, 0) RETURNING id",
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
    let pier = Pier::new(db, SecretKey::generate(), settings, runtime);
    (pier, actor, TempDir(dir))
}

/// Removes its directory when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}
