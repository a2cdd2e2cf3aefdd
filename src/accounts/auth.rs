//! Who is calling: the viewer of a request, and the guards that GraphQL
//! fields declare to say who may call them.

use std::net::IpAddr;

use async_graphql::{Context, Guard};
use uuid::Uuid;

use super::entity::Role;
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: Uuid,
    pub role: Role,
}

/// The caller of one request. A bad or expired token is kept apart from "no
/// token": public reads still work, but anything that needs a person answers
/// UNAUTHENTICATED, so a client knows to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    InvalidToken,
    User(CurrentUser),
}

impl Viewer {
    pub fn user(&self) -> AppResult<CurrentUser> {
        match self {
            Viewer::User(user) => Ok(*user),
            Viewer::InvalidToken => Err(AppError::Unauthenticated("Invalid or expired token")),
            Viewer::Anonymous => Err(AppError::Unauthenticated("Sign in first")),
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Viewer::User(user) => Some(user.role),
            _ => None,
        }
    }

    pub fn id(&self) -> Option<Uuid> {
        match self {
            Viewer::User(user) => Some(user.id),
            _ => None,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.role().is_some_and(|r| r >= role)
    }

    pub fn is(&self, user_id: Uuid) -> bool {
        self.id() == Some(user_id)
    }

    /// Signed in with at least `role`; UNAUTHENTICATED or FORBIDDEN otherwise.
    pub fn require(&self, role: Role) -> AppResult<CurrentUser> {
        let user = self.user()?;
        if user.role < role {
            return Err(AppError::Forbidden);
        }
        Ok(user)
    }
}

/// The address of the client, resolved through trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn viewer(ctx: &Context<'_>) -> Viewer {
    ctx.data_opt::<Viewer>()
        .copied()
        .unwrap_or(Viewer::Anonymous)
}

pub fn client_ip(ctx: &Context<'_>) -> IpAddr {
    ctx.data_opt::<ClientIp>()
        .map(|ip| ip.0)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The token of an `Authorization: Bearer …` header. Cookies never
/// authenticate anything.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Declared on a field: the caller must be signed in with at least this role.
pub struct RoleGuard(Role);

impl RoleGuard {
    pub fn new(role: Role) -> Self {
        Self(role)
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        viewer(ctx).require(self.0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_role(role: Role) -> Viewer {
        Viewer::User(CurrentUser {
            id: Uuid::new_v4(),
            role,
        })
    }

    #[test]
    fn each_role_includes_the_ones_before_it() {
        assert!(as_role(Role::Admin).has_role(Role::Staff));
        assert!(as_role(Role::Organizer).has_role(Role::Organizer));
        assert!(!as_role(Role::Staff).has_role(Role::Organizer));
        assert!(!Viewer::Anonymous.has_role(Role::Member));
    }

    #[test]
    fn require_distinguishes_unknown_callers_from_weak_roles() {
        assert_eq!(
            Viewer::Anonymous.require(Role::Member).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            Viewer::InvalidToken
                .require(Role::Member)
                .unwrap_err()
                .code(),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            as_role(Role::Member)
                .require(Role::Staff)
                .unwrap_err()
                .code(),
            "FORBIDDEN"
        );
    }
}
