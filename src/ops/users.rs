//! Users: create, disable and enable, set a password, log out everywhere,
//! end one session, lift a lockout.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Actor, Ops, Reason};
use crate::domain::{Attributes, PlainPassword, Scope, Username};
use crate::error::Error;
use crate::revocation;
use crate::store::refresh;
use crate::store::users::{self, CreateUserError, UserView};
use crate::throttle::lockout;

const NO_USER: &str = "no such user";
const NO_SESSION: &str = "no such session";

pub struct NewUser {
    pub username: String,
    pub password: SecretString,
    pub scopes: Vec<String>,
}

/// Most users one page lists.
const MAX_USER_PAGE: i64 = 500;

/// Users in username order, and where the next page starts.
#[derive(Debug, serde::Serialize)]
pub struct UserPage {
    pub users: Vec<UserView>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

impl Ops<'_> {
    pub async fn create_user(
        &self,
        actor: &Actor,
        new: NewUser,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<UserView, Error> {
        let username = Username::parse(&new.username)?;
        let scope = Scope::from_tokens(&new.scopes)?;
        let password =
            PlainPassword::new_password(new.password, self.settings.password.max_length)?;
        let hash = self.hasher.hash(password).await?;
        let mut tx = self.begin().await?;
        let id = users::insert(&mut *tx, &username, &hash, &scope.tokens(), now)
            .await
            .map_err(|e| match e {
                CreateUserError::Exists => {
                    Error::Conflict("a user with that username already exists")
                }
                CreateUserError::Db(e) => e.into(),
            })?;
        self.audit(
            &mut tx,
            actor,
            "user.create",
            Some(&id.to_string()),
            reason,
            now,
        )
        .await?;
        let user = users::find_by_id(&mut tx, id)
            .await?
            .ok_or(Error::NotFound(NO_USER))?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn read_user(
        &self,
        actor: &Actor,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<UserView, Error> {
        let user = users::find_by_id(&mut *self.pool.acquire().await?, id)
            .await?
            .ok_or(Error::NotFound(NO_USER))?;
        self.audit_read(actor, "user.read", Some(&id.to_string()), now)
            .await?;
        Ok(user)
    }

    /// Finds users: the one named `username` (normalised as at login), or a
    /// page of all of them after `after`, in username order. Not audited:
    /// it reads names and ids, which an operator needs to act at all.
    pub async fn find_users(
        &self,
        username: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<UserPage, Error> {
        let username = username.map(Username::parse).transpose()?;
        let exactly = username.as_ref().map(Username::as_str);
        let limit = limit.clamp(1, MAX_USER_PAGE);
        let users = users::page(self.pool, exactly, after, limit).await?;
        // A full page may have more after it.
        let next_cursor = (users.len() as i64 == limit)
            .then(|| users.last().map(|u| u.username.clone()))
            .flatten();
        Ok(UserPage { users, next_cursor })
    }

    /// Disabling also logs the user out everywhere.
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        id: Uuid,
        disabled: bool,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<UserView, Error> {
        let mut tx = self.begin().await?;
        if !users::set_disabled(&mut tx, id, disabled, now).await? {
            return Err(Error::NotFound(NO_USER));
        }
        let action = if disabled {
            let ttl = self.settings.tokens.longest_access();
            revocation::log_out_everywhere(&mut tx, id, "user disabled", now, ttl).await?;
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit(&mut tx, actor, action, Some(&id.to_string()), reason, now)
            .await?;
        let user = users::find_by_id(&mut tx, id)
            .await?
            .ok_or(Error::NotFound(NO_USER))?;
        self.commit(tx, now).await?;
        Ok(user)
    }

    /// Setting a password logs the user out everywhere.
    pub async fn set_password(
        &self,
        actor: &Actor,
        id: Uuid,
        password: SecretString,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let password = PlainPassword::new_password(password, self.settings.password.max_length)?;
        let hash = self.hasher.hash(password).await?;
        let mut tx = self.begin().await?;
        if !users::set_password_hash(&mut tx, id, &hash, now).await? {
            return Err(Error::NotFound(NO_USER));
        }
        let ttl = self.settings.tokens.longest_access();
        revocation::log_out_everywhere(&mut tx, id, "password changed", now, ttl).await?;
        self.audit(
            &mut tx,
            actor,
            "user.set_password",
            Some(&id.to_string()),
            reason,
            now,
        )
        .await?;
        self.commit(tx, now).await
    }

    /// Every session, and every access token issued until now. Returns how
    /// many sessions were ended.
    pub async fn log_out_everywhere(
        &self,
        actor: &Actor,
        id: Uuid,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<u64, Error> {
        let mut tx = self.begin().await?;
        if users::find_by_id(&mut tx, id).await?.is_none() {
            return Err(Error::NotFound(NO_USER));
        }
        let ttl = self.settings.tokens.longest_access();
        let sessions =
            revocation::log_out_everywhere(&mut tx, id, "admin revoked", now, ttl).await?;
        self.audit(
            &mut tx,
            actor,
            "user.revoke",
            Some(&id.to_string()),
            reason,
            now,
        )
        .await?;
        self.commit(tx, now).await?;
        Ok(sessions)
    }

    pub async fn list_sessions(
        &self,
        actor: &Actor,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<refresh::SessionView>, Error> {
        if users::find_by_id(&mut *self.pool.acquire().await?, id)
            .await?
            .is_none()
        {
            return Err(Error::NotFound(NO_USER));
        }
        let sessions = refresh::live_sessions(self.pool, id, now).await?;
        self.audit_read(actor, "sessions.list", Some(&id.to_string()), now)
            .await?;
        Ok(sessions)
    }

    /// Ends one session: every refresh token of it, and its access
    /// tokens.
    pub async fn revoke_session(
        &self,
        actor: &Actor,
        user: Uuid,
        session: Uuid,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        if !refresh::revoke_user_session(&mut tx, user, session, "admin revoked session", now)
            .await?
        {
            return Err(Error::NotFound(NO_SESSION));
        }
        let ttl = self.settings.tokens.longest_access();
        revocation::deny_session_tokens(&mut tx, session, now, ttl).await?;
        let target = format!("{user}/{session}");
        self.audit(&mut tx, actor, "session.revoke", Some(&target), reason, now)
            .await?;
        self.commit(tx, now).await
    }

    /// Lifts a login lockout by user id: forgets the username's failures.
    pub async fn unlock(
        &self,
        actor: &Actor,
        id: Uuid,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<UserView, Error> {
        let mut tx = self.begin().await?;
        let user = users::find_by_id(&mut tx, id)
            .await?
            .ok_or(Error::NotFound(NO_USER))?;
        lockout::reset(&mut tx, &user.username).await?;
        self.audit(
            &mut tx,
            actor,
            "user.unlock",
            Some(&id.to_string()),
            reason,
            now,
        )
        .await?;
        let user = users::find_by_id(&mut tx, id)
            .await?
            .ok_or(Error::NotFound(NO_USER))?;
        tx.commit().await?;
        Ok(user)
    }

    /// Replaces a user's attributes (at most 2 KiB; see
    /// `domain::attributes`), audited as `user.set_claims`. The next access
    /// token (the next refresh) of a client that picks them carries them.
    pub async fn set_user_claims(
        &self,
        actor: &Actor,
        id: Uuid,
        claims: serde_json::Value,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<UserView, Error> {
        let attributes = Attributes::parse(claims)?;
        let mut tx = self.begin().await?;
        if !users::set_claims(&mut tx, id, &attributes, now).await? {
            return Err(Error::NotFound(NO_USER));
        }
        self.audit(
            &mut tx,
            actor,
            "user.set_claims",
            Some(&id.to_string()),
            reason,
            now,
        )
        .await?;
        let user = users::find_by_id(&mut tx, id)
            .await?
            .ok_or(Error::NotFound(NO_USER))?;
        tx.commit().await?;
        Ok(user)
    }

    /// Turns a user's second factor off (a lost phone): the TOTP secret and
    /// the recovery codes go; the next login asks for the password only.
    pub async fn reset_mfa(
        &self,
        actor: &Actor,
        id: Uuid,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        if users::find_by_id(&mut tx, id).await?.is_none() {
            return Err(Error::NotFound(NO_USER));
        }
        crate::store::mfa::remove(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            "user.mfa_reset",
            Some(&id.to_string()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lifts a lockout by username, whether or not such a user exists
    /// (unknown usernames are locked too). Returns whether there was one.
    pub async fn unlock_username(
        &self,
        actor: &Actor,
        username: &str,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let username = Username::parse(username)?;
        let mut tx = self.begin().await?;
        let had_failures = lockout::reset(&mut tx, username.as_str()).await?;
        self.audit(
            &mut tx,
            actor,
            "user.unlock",
            Some(username.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(had_failures)
    }
}
