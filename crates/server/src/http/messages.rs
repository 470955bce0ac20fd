//! `GET /api/conversations` and `GET /api/messages` (history, catching up
//! on new messages and, with `changedAfter`, on changes).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palaver_protocol::{ConversationPage, MessagePage};
use serde::Deserialize;

use super::extract::{ApiQuery, AuthUser};
use super::ApiError;
use crate::app::App;
use crate::chat::{ChatError, ListPage, Target, DEFAULT_PAGE};
use crate::ids::{Page, PageError};

/// `limit` and `cursor` are taken as text and parsed by [`ListPage`], so
/// that a bad value is refused with a message naming what it expects.
#[derive(Deserialize)]
pub struct ConversationsQuery {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Without `limit` and `cursor`: the v1 bare array. With either: a page
/// object (v1.1), so that v1 clients see only new fields.
pub async fn conversations(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<ConversationsQuery>,
) -> Result<Response, ApiError> {
    if q.limit.is_none() && q.cursor.is_none() {
        let (list, _) = app.chat.conversations(me, None).await?;
        return Ok(Json(list).into_response());
    }
    let page = ListPage::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let (conversations, next) = app.chat.conversations(me, Some(page)).await?;
    Ok(Json(ConversationPage {
        conversations,
        has_more: next.is_some(),
        next_cursor: next.map(|c| c.to_string()),
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryQuery {
    #[serde(alias = "conversation_type")]
    conversation_type: String,
    #[serde(alias = "receiver_id")]
    receiver_id: i64,
    #[serde(default, alias = "after_seq")]
    after_seq: Option<i64>,
    #[serde(default, alias = "before_seq")]
    before_seq: Option<i64>,
    #[serde(default, alias = "changed_after")]
    changed_after: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

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
