//! `GET /api/conversations` and `GET /api/messages` (history, catching up
//! on new messages and, with `changedAfter`, on changes).

use axum::extract::State;
use axum::Json;
use palaver_protocol::{ConversationPage, ConversationSummary, ConversationType, MessagePage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiQuery, AuthUser};
use super::openapi::{Forbidden, InvalidPayload, NotFound, Unauthorized, Unavailable};
use super::ApiError;
use crate::app::App;
use crate::chat::{ChatError, ListPage, Target, DEFAULT_PAGE};
use crate::ids::{Page, PageError};

/// `limit` and `cursor` are taken as text and parsed by [`ListPage`], so
/// that a bad value is refused with a message naming what it expects.
/// Either one asks for the paged form.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// Rows per page: 1 to 500, 100 if only `cursor` is given.
    #[serde(default)]
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page, unchanged (opaque).
    #[serde(default)]
    #[param(nullable = false, min_length = 1)]
    cursor: Option<String>,
}

/// `GET /api/conversations` answer: the v1 bare array, or (v1.1, `limit`
/// or `cursor` given) a page.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Conversations {
    /// The first 1,000 rows (no `limit`, no `cursor`).
    List(Vec<ConversationSummary>),
    Page(ConversationPage),
}

/// Without `limit` and `cursor`: the v1 bare array. With either: a page
/// object (v1.1), so that v1 clients see only new fields.
#[utoipa::path(
    get,
    path = "/api/conversations",
    operation_id = "conversations",
    tag = "messages",
    security(("bearer" = [])),
    params(ConversationsQuery),
    responses(
        (status = 200, description = "The caller's conversations, most recent activity first: a bare array without `limit` and `cursor`, a page with either", body = Conversations),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn conversations(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<ConversationsQuery>,
) -> Result<Json<Conversations>, ApiError> {
    if q.limit.is_none() && q.cursor.is_none() {
        let (list, _) = app.chat.conversations(me, None).await?;
        return Ok(Json(Conversations::List(list)));
    }
    let page = ListPage::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let (conversations, next) = app.chat.conversations(me, Some(page)).await?;
    Ok(Json(Conversations::Page(ConversationPage {
        conversations,
        has_more: next.is_some(),
        next_cursor: next.map(|c| c.to_string()),
    })))
}

/// Which conversation, and which of its messages: after `afterSeq`, before
/// `beforeSeq` (back from the newest), or changed after `changedAfter`
/// (which goes with neither of the other two).
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[serde(alias = "conversation_type")]
    #[param(value_type = ConversationType)]
    conversation_type: String,
    /// The other user (private) or the group (group).
    #[serde(alias = "receiver_id")]
    #[param(minimum = 1)]
    receiver_id: i64,
    /// Messages with a greater seq, ascending.
    #[serde(default, alias = "after_seq")]
    #[param(nullable = false, minimum = 0)]
    after_seq: Option<i64>,
    /// Messages with a smaller seq: the page that ends just before it.
    #[serde(default, alias = "before_seq")]
    #[param(nullable = false, minimum = 1)]
    before_seq: Option<i64>,
    /// Messages whose `change_seq` is greater, in change order (v1.2).
    #[serde(default, alias = "changed_after")]
    #[param(nullable = false, minimum = 0)]
    changed_after: Option<i64>,
    /// Messages per page: at least 1, 50 if absent; more than 200 is
    /// taken as 200.
    #[serde(default)]
    #[param(value_type = i64, nullable = false, minimum = 1, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/messages",
    operation_id = "history",
    tag = "messages",
    security(("bearer" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of the conversation's messages", body = MessagePage),
        (status = 400, response = InvalidPayload),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub async fn history(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let target = Target::parse(&q.conversation_type, q.receiver_id)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let page = match q.changed_after {
        None => Page::parse(q.after_seq, q.before_seq, limit),
        Some(_) if q.after_seq.is_some() || q.before_seq.is_some() => Err(PageError::Changed),
        Some(n) => Page::changed_after(n, limit),
    }
    .map_err(ChatError::from)?;
    Ok(Json(app.chat.history(me, target, page).await?))
}
