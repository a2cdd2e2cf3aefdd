//! The `Media` type, `media` and `mediaList`, and `deleteMedia`. Uploads go
//! through `POST /api/media/upload` (see `rest`): multipart has no place in
//! this schema.

use async_graphql::{Context, ID, Object};

use super::entity as media;
use super::service;
use crate::accounts::auth::viewer;
use crate::accounts::{Role, RoleGuard};
use crate::app::AppState;
use crate::graphql::pagination::{CountedConnection, PageRequest, parse_id};
use crate::graphql::scalars::DateTimeScalar;

pub struct MediaObject(pub media::Model);

#[Object(name = "Media")]
impl MediaObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// `PUBLIC_URL/api/media/{id}`: the file itself.
    async fn url(&self, ctx: &Context<'_>) -> String {
        service::url(ctx.data_unchecked::<AppState>(), self.0.id)
    }

    /// At most 400 px on the longer side, in the same format as `url`.
    async fn thumbnail_url(&self, ctx: &Context<'_>) -> String {
        service::thumbnail_url(ctx.data_unchecked::<AppState>(), self.0.id)
    }

    /// Of the stored file: JPEG stays `image/jpeg`; PNG, WebP and GIF are
    /// stored as `image/png`.
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }

    /// Bytes of the stored file, after metadata was stripped.
    async fn size(&self) -> i32 {
        i32::try_from(self.0.size).unwrap_or(i32::MAX)
    }

    /// In pixels, upright (after the EXIF orientation was applied).
    async fn width(&self) -> Option<i32> {
        self.0.width
    }

    async fn height(&self) -> Option<i32> {
        self.0.height
    }

    async fn related_id(&self) -> Option<ID> {
        self.0.related_id.map(|id| ID(id.to_string()))
    }

    async fn created_at(&self) -> DateTimeScalar {
        self.0.created_at.into()
    }
}

#[derive(Default)]
pub struct MediaQuery;

#[Object]
impl MediaQuery {
    /// Public: media are served to anyone who has the id.
    async fn media(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<MediaObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let found = service::get(&state.db, parse_id(&id, "id")?).await?;
        Ok(found.map(MediaObject))
    }

    /// Newest first.
    #[graphql(
        guard = "RoleGuard::new(Role::Organizer)",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn media_list(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<CountedConnection<MediaObject>> {
        let state = ctx.data_unchecked::<AppState>();
        let page = PageRequest::new(ctx, first, after)?;
        let page = service::list(&state.db, &page).await?;
        Ok(page.map(MediaObject).into())
    }
}

#[derive(Default)]
pub struct MediaMutation;

#[Object]
impl MediaMutation {
    /// Removes the media and its stored files. CONFLICT while it is an
    /// event's banner.
    #[graphql(guard = "RoleGuard::new(Role::Organizer)")]
    async fn delete_media(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let state = ctx.data_unchecked::<AppState>();
        let caller = viewer(ctx).user()?;
        Ok(service::delete(state, caller, parse_id(&id, "id")?).await?)
    }
}
