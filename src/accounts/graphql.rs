//! The `User` type, sign-in mutations and user administration.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use super::RoleGuard;
use super::auth::{client_ip, viewer};
use super::entity::{Role, user};
use super::service::{self, NewUser, Session, UserChanges};
use crate::app::AppState;
use crate::error::AppError;
use crate::graphql::pagination::{CountedConnection, PageRequest, parse_id};
use crate::graphql::scalars::DateTimeScalar;
use crate::tickets::graphql::{TicketConnection, TicketObject, prefetch};
use crate::tickets::service as tickets;

pub struct UserObject {
    user: user::Model,
    /// Set when the object answers a sign-in: the caller is this user even
    /// though the request carried no token.
    signed_in_as: bool,
}

impl From<user::Model> for UserObject {
    fn from(user: user::Model) -> Self {
        Self {
            user,
            signed_in_as: false,
        }
    }
}

impl UserObject {
    /// Contact details are for the person themself and for organizers.
    fn may_see_contact(&self, ctx: &Context<'_>) -> bool {
        let viewer = viewer(ctx);
        self.signed_in_as || viewer.is(self.user.id) || viewer.has_role(Role::Organizer)
    }
}

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.user.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.user.name
    }

    /// Visible to the user and to ORGANIZER+; null otherwise.
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        self.may_see_contact(ctx)
            .then_some(self.user.email.as_str())
    }

    /// Visible to the user and to ORGANIZER+; null otherwise.
    async fn phone(&self, ctx: &Context<'_>) -> Option<&str> {
        self.may_see_contact(ctx)
            .then_some(self.user.phone.as_deref())
            .flatten()
    }

    /// "es" or "en": the language of the emails sent to them.
    async fn locale(&self) -> &str {
        &self.user.locale
    }

    async fn role(&self) -> Role {
        self.user.role
    }

    async fn created_at(&self) -> DateTimeScalar {
        self.user.created_at.into()
    }

    async fn updated_at(&self) -> DateTimeScalar {
        self.user.updated_at.into()
    }

    /// Their tickets, oldest first: for themself and STAFF+.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<TicketConnection> {
        let viewer = viewer(ctx);
        if !(self.signed_in_as || viewer.is(self.user.id) || viewer.has_role(Role::Staff)) {
            return Err(AppError::Forbidden.into());
        }
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let page = tickets::list(&state.db, tickets::of_user(self.user.id), &page).await?;
        prefetch(ctx, &page.models()).await?;
        Ok(page.map(TicketObject).into())
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i32,
    pub user: UserObject,
}

impl From<Session> for AuthPayload {
    fn from(s: Session) -> Self {
        Self {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            expires_in: s.expires_in as i32,
            user: UserObject {
                user: s.user,
                signed_in_as: true,
            },
        }
    }
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub name: String,
    pub email: String,
    pub password: String,
    pub phone: Option<String>,
    pub locale: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateUserInput {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub locale: Option<String>,
    /// ADMIN only.
    pub role: Option<Role>,
    pub password: Option<String>,
    /// Required to change one's own password.
    pub current_password: Option<String>,
}

#[derive(InputObject, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    /// Matches name or email.
    pub search: Option<String>,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// Null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let viewer = viewer(ctx);
        if viewer == super::Viewer::Anonymous {
            return Ok(None);
        }
        let caller = viewer.user()?;
        Ok(service::find(&state.db, caller.id)
            .await?
            .map(UserObject::from))
    }

    /// The user themself, or STAFF+.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<UserObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let viewer = viewer(ctx);
        let caller = viewer.user()?;
        let id = parse_id(&id, "id")?;
        if caller.id != id && caller.role < Role::Staff {
            return Err(AppError::NotFound("User").into());
        }
        let found = service::find(&state.db, id)
            .await?
            .ok_or(AppError::NotFound("User"))?;
        Ok(Some(UserObject::from(found)))
    }

    #[graphql(
        guard = "RoleGuard::new(Role::Organizer)",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<UserFilter>,
    ) -> async_graphql::Result<CountedConnection<UserObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let filter = filter.unwrap_or_default();
        let filter = service::UserFilter {
            role: filter.role,
            search: filter.search,
        };
        let page = service::list(&state.db, filter, &page).await?;
        Ok(page.map(UserObject::from).into())
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        state.limiter.attempt_from(client_ip(ctx))?;
        let new_user = NewUser {
            name: input.name,
            email: input.email,
            password: input.password,
            phone: input.phone,
            locale: input.locale,
        };
        Ok(service::register(state, new_user).await?.into())
    }

    /// Every `login` field counts as one attempt against the rate limits.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        state.limiter.attempt_from(client_ip(ctx))?;
        Ok(service::login(state, &email, &password, client_ip(ctx))
            .await?
            .into())
    }

    /// Rotates: the old refresh token stops working.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(service::refresh(state, &refresh_token).await?.into())
    }

    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(service::logout(state, &refresh_token).await?)
    }

    /// True whether or not the email is known.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        state.limiter.attempt_from(client_ip(ctx))?;
        service::request_password_reset(state, &email).await?;
        Ok(true)
    }

    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        token: String,
        new_password: String,
    ) -> async_graphql::Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        state.limiter.attempt_from(client_ip(ctx))?;
        service::reset_password(state, &token, &new_password).await?;
        Ok(true)
    }

    /// Oneself (a password change needs currentPassword); the role: ADMIN only.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateUserInput,
    ) -> async_graphql::Result<UserObject> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        let id = parse_id(&id, "id")?;
        let changes = UserChanges {
            name: input.name,
            phone: input.phone,
            locale: input.locale,
            role: input.role,
            password: input.password,
            current_password: input.current_password,
        };
        Ok(UserObject::from(
            service::update(state, caller, id, changes).await?,
        ))
    }
}
