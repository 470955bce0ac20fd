//! `GET /api/conversations` and `GET /api/messages` (history, catching up).

use axum::extract::State;
use axum::Json;
use palaver_protocol::{ConversationSummary, MessagePage};
use serde::Deserialize;

use super::extract::{ApiQuery, AuthUser};
use super::ApiError;
use crate::app::App;
use crate::chat::{ChatError, Target, DEFAULT_PAGE};
use crate::store::Page;

pub async fn conversations(
    State(app): State<App>,
    AuthUser(me): AuthUser,
) -> Result<Json<Vec<ConversationSummary>>, ApiError> {
    Ok(Json(app.chat.conversations(me).await?))
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
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn history(
    State(app): State<App>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let target = Target::parse(&q.conversation_type, q.receiver_id)?;
    if q.after_seq.is_some_and(|s| s < 0) || q.before_seq.is_some_and(|s| s < 1) {
        return Err(ChatError::invalid("afterSeq must be ≥ 0 and beforeSeq ≥ 1").into());
    }
    if q.limit == Some(0) {
        return Err(ChatError::invalid("limit must be at least 1").into());
    }
    let page = Page {
        after_seq: q.after_seq,
        before_seq: q.before_seq,
        limit: q.limit.unwrap_or(DEFAULT_PAGE),
    };
    Ok(Json(app.chat.history(me, target, page).await?))
}
