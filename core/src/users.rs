//! User administration (admins only): the list, new users, roles, quotas, disabling, password
//! resets and deletion, with the last-admin guard in the SQL itself.

use crate::{
    model::{Actor, Quotas, Role, User},
    now, password, repo,
    validate::{self, Checks},
    Error, Pier, Result,
};

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Already checked (`validate::quotas`).
    pub quotas: Option<Quotas>,
}

impl UserPatch {
    /// What the patch changes, for the audit log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.role {
            parts.push(format!("role {}", r.as_str()));
        }
        if let Some(d) = self.disabled {
            parts.push(if d { "disabled" } else { "enabled" }.to_owned());
        }
        if let Some(q) = self.quotas {
            parts.push(format!(
                "quotas: {} apps, {} MiB memory, {} CPUs, {} MiB storage, {} MiB backups",
                q.max_apps,
                q.max_memory_mb,
                validate::format_cpus(q.max_cpus_milli),
                q.max_storage_mb,
                q.max_backup_mb
            ));
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Quotas as typed into the admin form, for the audit log: `[apps, memory MiB, CPUs, storage
/// MiB, backups MiB]`, an empty field said as `empty` ("unchanged", "default").
fn typed_quotas([apps, memory, cpus, storage, backups]: [&str; 5], empty: &str) -> String {
    let v = |s: &str| match s.trim() {
        "" => empty.to_owned(),
        t => t.chars().take(20).collect(),
    };
    format!(
        "quotas: apps {}, memory {} MiB, CPUs {}, storage {} MiB, backups {} MiB",
        v(apps),
        v(memory),
        v(cpus),
        v(storage),
        v(backups)
    )
}

impl NewUser {
    /// The new user as the audit log tells it (whether a password was set, never the password).
    fn describe(&self) -> String {
        let role = match self.role.trim() {
            "" => "default".to_owned(),
            r => r.chars().take(20).collect(),
        };
        let quotas = [
            self.max_apps.as_str(),
            &self.max_memory_mb,
            &self.max_cpus,
            &self.max_storage_mb,
            &self.max_backup_mb,
        ];
        format!(
            "role {role}; {}; {}",
            if self.password.is_empty() {
                "invite link"
            } else {
                "password set"
            },
            typed_quotas(quotas, "default")
        )
    }
}

/// A user to create, as typed into the admin form.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub role: String,
    /// Empty: the user gets an invite link to choose a password.
    pub password: String,
    pub max_apps: String,
    pub max_memory_mb: String,
    pub max_cpus: String,
    /// Empty: the operator's default.
    pub max_storage_mb: String,
    /// Empty: the operator's default.
    pub max_backup_mb: String,
}

impl Pier {
    // ----- administration -------------------------------------------------------------------

    pub async fn list_users(&self, actor: &Actor) -> Result<Vec<User>> {
        Self::require_admin(actor)?;
        repo::users::list(self.db()).await
    }

    /// Creates a user. Without a password, returns an invite token for them to choose one.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<(User, Option<String>)> {
        let mut what =
            crate::audit::Change::new(crate::audit::Action::UserCreate, new.email.trim())
                .summary(new.describe());
        let r = match Self::require_admin(actor) {
            Ok(()) => self.create_user_unchecked(new).await,
            Err(e) => Err(e),
        };
        what.owner = r.as_ref().ok().map(|(u, _)| u.id);
        self.record(actor, what, &r).await;
        r
    }

    async fn create_user_unchecked(&self, new: NewUser) -> Result<(User, Option<String>)> {
        let mut c = Checks::default();
        let email = c.check("email", validate::email(&new.email));
        let role = c.check(
            "role",
            Role::parse(new.role.trim()).ok_or_else(|| "Choose admin or member.".to_string()),
        );
        if !new.password.is_empty() {
            c.check("password", validate::password(&new.password));
        }
        let d = self.settings().default_quotas;
        let or = |s: &str, v: String| if s.trim().is_empty() { v } else { s.to_owned() };
        let quotas = validate::quotas_into(
            &mut c,
            &or(&new.max_apps, d.max_apps.to_string()),
            &or(&new.max_memory_mb, d.max_memory_mb.to_string()),
            &or(&new.max_cpus, validate::format_cpus(d.max_cpus_milli)),
            &new.max_storage_mb,
            &new.max_backup_mb,
            d,
        );
        if let Some(e) = &email {
            if repo::users::by_email(self.db(), e).await?.is_some() {
                c.check::<()>(
                    "email",
                    Err("A user with this email already exists.".into()),
                );
            }
        }
        c.finish()?;
        let (email, role, quotas) = (
            email.unwrap_or_default(),
            role.unwrap_or(Role::Member),
            quotas.unwrap_or(d),
        );
        let hash = if new.password.is_empty() {
            None
        } else {
            Some(password::hash(new.password.clone()).await?)
        };
        let mut tx = self.db().begin().await?;
        let id = match repo::users::insert(&mut *tx, &email, hash.as_deref(), role, quotas, now())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                return Err(
                    e.on_unique(|| Error::field("email", "A user with this email already exists."))
                )
            }
        };
        repo::users::assign_handle(&mut tx, id, &email).await?;
        let token = if hash.is_none() {
            Some(self.new_invite(&mut tx, id).await?)
        } else {
            None
        };
        tx.commit().await?;
        let user = repo::users::by_id(self.db(), id)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(user_id = id, role = role.as_str(), "user created");
        Ok((user, token))
    }

    /// The operator's way in: creates an admin from the command line, where no one is signed in.
    pub async fn create_admin_from_cli(&self, email: &str, password: &str) -> Result<User> {
        let new = NewUser {
            email: email.to_owned(),
            role: "admin".into(),
            password: password.to_owned(),
            ..NewUser::default()
        };
        let mut what = crate::audit::Change::new(crate::audit::Action::UserCreate, email.trim())
            .summary(new.describe());
        let r = self.create_user_unchecked(new).await.map(|(user, _)| user);
        what.owner = r.as_ref().ok().map(|u| u.id);
        self.record_as(&crate::audit::Who::command_line(), what, &r)
            .await;
        r
    }

    /// How a user is named in an audit entry: their e-mail for an admin, the bare id for
    /// anyone else (whose refused attempt must not learn whose account the id is).
    pub(crate) async fn user_label(&self, actor: &Actor, id: i64) -> String {
        match actor.is_admin() {
            true => match repo::users::by_id(self.db(), id).await {
                Ok(Some(u)) => u.email,
                _ => format!("#{id}"),
            },
            false => format!("#{id}"),
        }
    }

    /// One user, for an admin.
    pub async fn user(&self, actor: &Actor, id: i64) -> Result<User> {
        Self::require_admin(actor)?;
        self.target(id).await
    }

    async fn target(&self, id: i64) -> Result<User> {
        repo::users::by_id(self.db(), id)
            .await?
            .ok_or(Error::NotFound)
    }

    const LAST_ADMIN: &'static str =
        "This is the last enabled admin. Make someone else an admin first.";

    /// Changes what `patch` names of a user, all in one transaction: a refusal (the last
    /// admin) leaves every field as it was.
    pub async fn patch_user(&self, actor: &Actor, id: i64, patch: UserPatch) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(patch.describe());
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            self.target(id).await?;
            let mut tx = self.db().begin().await?;
            if let Some(role) = patch.role {
                if !repo::users::set_role_keeping_an_admin(&mut *tx, id, role).await? {
                    return Err(Error::Conflict(Self::LAST_ADMIN.into()));
                }
            }
            if let Some(disabled) = patch.disabled {
                if !repo::users::set_disabled_keeping_an_admin(&mut *tx, id, disabled).await? {
                    return Err(Error::Conflict(Self::LAST_ADMIN.into()));
                }
                if disabled {
                    repo::sessions::delete_for_user(&mut *tx, id).await?;
                }
            }
            if let Some(q) = patch.quotas {
                if !repo::users::set_quotas(&mut *tx, id, q).await? {
                    return Err(Error::NotFound);
                }
            }
            tx.commit().await?;
            tracing::info!(user_id = id, by = actor.user_id, ?patch, "user changed");
            self.target(id).await
        })
        .await
    }

    pub async fn set_role(&self, actor: &Actor, id: i64, role: &str) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(format!("role {}", role.trim()));
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let role =
                Role::parse(role).ok_or_else(|| Error::field("role", "Choose admin or member."))?;
            self.target(id).await?;
            if !repo::users::set_role_keeping_an_admin(self.db(), id, role).await? {
                return Err(Error::Conflict(Self::LAST_ADMIN.into()));
            }
            tracing::info!(
                user_id = id,
                by = actor.user_id,
                role = role.as_str(),
                "role changed"
            );
            self.target(id).await
        })
        .await
    }

    /// Disables (ending every session of the user at once) or enables a user.
    pub async fn set_disabled(&self, actor: &Actor, id: i64, disabled: bool) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(if disabled { "disabled" } else { "enabled" });
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            self.target(id).await?;
            let mut tx = self.db().begin().await?;
            if !repo::users::set_disabled_keeping_an_admin(&mut *tx, id, disabled).await? {
                return Err(Error::Conflict(Self::LAST_ADMIN.into()));
            }
            if disabled {
                repo::sessions::delete_for_user(&mut *tx, id).await?;
            }
            tx.commit().await?;
            tracing::info!(
                user_id = id,
                by = actor.user_id,
                disabled,
                "user status changed"
            );
            self.target(id).await
        })
        .await
    }

    /// Issues a new invite link with which the user chooses a new password. With
    /// `revoke_tokens` (an account that may be in the wrong hands) the account is locked out at
    /// once: every API token and session ends and the old password stops working, until the
    /// link is used. Returns the user, the invite token and how many tokens went.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        id: i64,
        revoke_tokens: bool,
    ) -> Result<(User, String, u64)> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserPasswordReset,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(if revoke_tokens {
            "new invite link; locked out: sessions, password and API tokens revoked"
        } else {
            "new invite link"
        });
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let user = self.target(id).await?;
            let mut tx = self.db().begin().await?;
            let token = self.new_invite(&mut tx, id).await?;
            let revoked = match revoke_tokens {
                true => {
                    repo::sessions::delete_for_user(&mut *tx, id).await?;
                    repo::users::clear_password(&mut *tx, id).await?;
                    repo::tokens::delete_all_for_user(&mut *tx, id).await?
                }
                false => 0,
            };
            tx.commit().await?;
            tracing::info!(
                user_id = id,
                by = actor.user_id,
                locked_out = revoke_tokens,
                tokens_revoked = revoked,
                "password reset link issued"
            );
            Ok((user, token, revoked))
        })
        .await
    }

    /// Sets a user's quotas from a form: `[apps, memory MiB, CPUs, storage MiB, backups MiB]`
    /// (an empty storage or backups field keeps its value).
    pub async fn set_quotas(&self, actor: &Actor, id: i64, form: [&str; 5]) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(typed_quotas(form, "unchanged"));
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let current = self.target(id).await?;
            let [apps, memory, cpus, storage, backups] = form;
            let q = validate::quotas(apps, memory, cpus, storage, backups, current.quotas)?;
            if !repo::users::set_quotas(self.db(), id, q).await? {
                return Err(Error::NotFound);
            }
            self.target(id).await
        })
        .await
    }

    pub async fn delete_user(&self, actor: &Actor, id: i64) -> Result<()> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserDelete,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary("deleted");
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let user = self.target(id).await?;
            if id == actor.user_id {
                return Err(Error::Conflict(
                    "You cannot delete your own account; ask another admin.".into(),
                ));
            }
            let apps = repo::apps::count_for_user(self.db(), id).await?;
            if apps > 0 {
                return Err(Error::Conflict(format!(
                    "{} still has {apps} app{}. Delete them first, or disable the account instead.",
                    user.email,
                    if apps == 1 { "" } else { "s" }
                )));
            }
            let kept = repo::volumes::list_for_user(self.db(), id).await?.len();
            if kept > 0 {
                return Err(Error::Conflict(format!(
                    "{} still has {kept} volume{} with data. They delete them on their Volumes page first.",
                    user.email,
                    if kept == 1 { "" } else { "s" }
                )));
            }
            if !repo::users::delete_keeping_an_admin(self.db(), id).await? {
                return Err(Error::Conflict(Self::LAST_ADMIN.into()));
            }
            tracing::info!(user_id = id, email = %user.email, by = actor.user_id, "user deleted");
            Ok(())
        })
        .await
    }
}
