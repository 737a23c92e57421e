//! Registry logins: a tenant's credentials for private registries, encrypted at rest.

use crate::{
    model::{Actor, RegistryCredential},
    now, repo,
    runtime::RegistryAuth,
    validate::{self, Checks},
    Error, Pier, Result,
};

use super::registry_context;

impl Pier {
    pub async fn registry_credentials(&self, actor: &Actor) -> Result<Vec<RegistryCredential>> {
        repo::registries::list_for_user(self.db(), actor.user_id).await
    }

    pub async fn set_registry_credential(
        &self,
        actor: &Actor,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<String> {
        let what = crate::audit::Change::new(crate::audit::Action::RegistryLogin, registry.trim())
            .owner(actor.user_id)
            .summary(format!("as {}", username.trim()));
        self.audited(actor, what, async {
            let mut c = Checks::default();
            let registry = c.check("registry", validate::registry_host(registry));
            let username = username.trim();
            if username.is_empty() || username.len() > 255 || username.chars().any(char::is_control)
            {
                c.check::<()>(
                    "username",
                    Err("Enter the user name for this registry.".into()),
                );
            }
            if password.is_empty() || password.len() > 4096 || password.contains('\0') {
                c.check::<()>(
                    "password",
                    Err("Enter the password or access token for this registry.".into()),
                );
            }
            c.finish()?;
            let registry = registry.expect("checked");
            let sealed = self.key().encrypt(
                password.as_bytes(),
                &registry_context(actor.user_id, &registry),
            );
            repo::registries::upsert(
                self.db(),
                actor.user_id,
                &registry,
                username,
                &sealed,
                now(),
            )
            .await?;
            Ok(registry)
        })
        .await
    }

    pub async fn delete_registry_credential(&self, actor: &Actor, registry: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::RegistryLogout, registry.trim())
            .owner(actor.user_id)
            .summary("login removed");
        self.audited(actor, what, async {
            let registry = validate::registry_host(registry).map_err(|_| Error::NotFound)?;
            if repo::registries::delete(self.db(), actor.user_id, &registry).await? {
                Ok(())
            } else {
                Err(Error::NotFound)
            }
        })
        .await
    }

    /// The login the engine uses to pull `registry` for a tenant.
    pub async fn registry_auth(
        &self,
        user_id: i64,
        registry: &str,
    ) -> Result<Option<RegistryAuth>> {
        let Some(cred) = repo::registries::for_registry(self.db(), user_id, registry).await? else {
            return Ok(None);
        };
        let password = String::from_utf8(
            self.key()
                .decrypt(&cred.sealed_password, &registry_context(user_id, registry))?,
        )
        .map_err(|_| Error::internal("a registry password is not UTF-8"))?;
        Ok(Some(RegistryAuth {
            server: cred.registry,
            username: cred.username,
            password,
        }))
    }
}
