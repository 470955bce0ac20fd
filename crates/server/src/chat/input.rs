//! Typed input: everything a client sends becomes one of these once, at the
//! edge, and the rest of the domain never checks it again.

use palaver_protocol::{ChangeInput, ConversationType, SendMessage};

use super::ChatError;
use crate::ids::{ActivityKey, ConversationKey, ConversationsPage, GroupId, IdError, UserId};
use crate::store::MessageChange;

/// A registrable username: 3–32 of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, ChatError> {
        let ok_chars = s.chars().all(Self::allowed_char);
        if !(3..=32).contains(&s.len()) || !ok_chars {
            return Err(ChatError::invalid(
                "username must be 3 to 32 characters of A-Z, a-z, 0-9, '_', '.', '-'",
            ));
        }
        Ok(Username(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `c` may appear in a username.
    pub fn allowed_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    }
}

/// A password of 8–128 characters.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, ChatError> {
        if !(8..=128).contains(&s.chars().count()) {
            return Err(ChatError::invalid("password must be 8 to 128 characters"));
        }
        Ok(Password(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group name: 1–100 characters, not blank, no control characters.
#[derive(Debug, Clone)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(s: &str) -> Result<Self, ChatError> {
        if s.trim().is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
            return Err(ChatError::invalid(
                "group name must be 1 to 100 characters, not blank, without control characters",
            ));
        }
        Ok(GroupName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id a client sent in a payload, named `what` when refused.
pub fn parse_id<T: TryFrom<i64, Error = IdError>>(what: &str, raw: i64) -> Result<T, ChatError> {
    T::try_from(raw).map_err(|_| ChatError::invalid(format!("{what} must be a positive integer")))
}

/// The other members of a new group (`memberIds`). The lowest id is the
/// one named when any is refused, so the answer does not depend on the
/// order they were sent in.
pub fn parse_member_ids(raw: &[i64]) -> Result<Vec<UserId>, ChatError> {
    raw.iter()
        .map(|&m| UserId::parse(m))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            let lowest = raw.iter().min().copied().unwrap_or_default();
            ChatError::invalid(format!("memberIds: {lowest} is not a valid id"))
        })
}

/// A user named in a path. An id that is not positive names no user, and
/// is answered as any unknown user is: `not_found`.
pub fn path_user(raw: i64) -> Result<UserId, ChatError> {
    UserId::parse(raw).map_err(|_| ChatError::no_such_user(raw))
}

/// A group named in a path; as [`path_user`], one that is not positive is
/// `not_found`.
pub fn path_group(raw: i64) -> Result<GroupId, ChatError> {
    GroupId::parse(raw).map_err(|_| ChatError::no_such_group(raw))
}

/// Rows per page of the conversation list when `limit` is not given.
pub const DEFAULT_CONVERSATION_PAGE: u32 = 100;
/// Most rows per page of the conversation list.
pub const MAX_CONVERSATION_PAGE: u32 = 500;

/// A request for a page of the conversation list (v1.1: `limit` or
/// `cursor` given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListPage {
    pub limit: u32,
    /// Where the page starts: after this place in the order.
    pub after: Option<ListCursor>,
}

impl ListPage {
    /// Parses the raw query values. An empty value is an error, not an
    /// absent parameter: `limit=` is a client bug worth telling about.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, ChatError> {
        let range = 1..=MAX_CONVERSATION_PAGE;
        let limit = match limit {
            None => DEFAULT_CONVERSATION_PAGE,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    ChatError::invalid(format!(
                        "limit: expected an integer from 1 to {MAX_CONVERSATION_PAGE}, got {raw:?}"
                    ))
                })?,
        };
        let after = cursor.map(ListCursor::parse).transpose()?;
        Ok(ListPage { limit, after })
    }

    /// The store's view of this page.
    pub fn store_page(self) -> ConversationsPage {
        ConversationsPage {
            after: self.after.map(|c| c.0),
            limit: self.limit,
        }
    }
}

/// The opaque `cursor` of the conversation list: the last row's place in
/// the order, written `<last message id>.<conversation id>`. Clients are
/// told not to parse it, so the format may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor(pub ActivityKey);

impl ListCursor {
    pub fn parse(raw: &str) -> Result<Self, ChatError> {
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<i64>().ok())
                .flatten()
        };
        raw.split_once('.')
            .and_then(|(m, c)| {
                Some(ActivityKey {
                    last_message_id: number(m)?,
                    conversation_id: number(c)?,
                })
            })
            .map(ListCursor)
            .ok_or_else(|| {
                ChatError::invalid(format!(
                    "cursor: expected the next_cursor of a previous page, unchanged; got {raw:?}"
                ))
            })
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0.last_message_id, self.0.conversation_id)
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Private(UserId),
    Group(GroupId),
}

impl Target {
    pub fn parse(kind: &str, receiver: i64) -> Result<Self, ChatError> {
        match ConversationType::parse(kind) {
            Some(ConversationType::Private) => {
                parse_id("receiverId", receiver).map(Target::Private)
            }
            Some(ConversationType::Group) => parse_id("receiverId", receiver).map(Target::Group),
            None => Err(ChatError::invalid(format!(
                "unknown conversationType {kind:?}: expected \"private\" or \"group\""
            ))),
        }
    }

    /// The conversation this target names, seen from `me`.
    pub fn conversation(self, me: UserId) -> ConversationKey {
        match self {
            Target::Private(peer) => ConversationKey::private(me, peer),
            Target::Group(g) => ConversationKey::Group(g),
        }
    }

    /// The receiver's id as the wire carries it.
    pub fn receiver(self) -> i64 {
        match self {
            Target::Private(id) => id.get(),
            Target::Group(id) => id.get(),
        }
    }
}

/// A validated `message` send from an authenticated user.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub sender: UserId,
    pub target: Target,
    pub content: String,
    pub client_msg_id: Option<String>,
    /// The seq of the message it answers, ≥ 1 (v1.2).
    pub reply_to_seq: Option<i64>,
    /// Group messages: the users it mentions, distinct, at most
    /// [`MAX_MENTIONS`] (v1.2); whether they are members is checked with
    /// the group's roster.
    pub mentions: Vec<UserId>,
}

/// Most users one message mentions.
pub const MAX_MENTIONS: usize = 50;

/// Longest accepted `clientMsgId`, in characters.
pub const MAX_CLIENT_MSG_ID: usize = 64;

impl SendRequest {
    /// Checks a client's `message` payload for `sender` (the authenticated
    /// user). `max_chars` bounds the content in Unicode scalar values.
    pub fn parse(raw: SendMessage, sender: UserId, max_chars: usize) -> Result<Self, ChatError> {
        if raw.sender_id.is_some_and(|s| s != sender.get()) {
            return Err(ChatError::Forbidden(
                "senderId does not match the authenticated user".into(),
            ));
        }
        let target = Target::parse(&raw.conversation_type, raw.receiver_id)?;
        check_content(&raw.content, max_chars)?;
        if let Some(id) = &raw.client_msg_id {
            check_client_msg_id(id)?;
        }
        if let Some(seq) = raw.reply_to_seq {
            check_seq("replyToSeq", seq)?;
        }
        let mentions = parse_mentions(target, raw.mentions.unwrap_or_default())?;
        Ok(SendRequest {
            sender,
            target,
            content: raw.content,
            client_msg_id: raw.client_msg_id,
            reply_to_seq: raw.reply_to_seq,
            mentions,
        })
    }
}

/// `mentions`: user ids, on group messages only, at most [`MAX_MENTIONS`]
/// once repeats are dropped.
fn parse_mentions(target: Target, raw: Vec<i64>) -> Result<Vec<UserId>, ChatError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if !matches!(target, Target::Group(_)) {
        return Err(ChatError::invalid("mentions are for group messages only"));
    }
    let mut ids = raw
        .into_iter()
        .map(|id| {
            UserId::parse(id)
                .map_err(|_| ChatError::invalid(format!("mentions: {id} is not a user id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_MENTIONS {
        return Err(ChatError::invalid(format!(
            "a message mentions at most {MAX_MENTIONS} users"
        )));
    }
    Ok(ids)
}

/// Content is 1..=`max_chars` characters (Unicode scalar values), without
/// U+0000: the same rule for a send and an edit.
fn check_content(content: &str, max_chars: usize) -> Result<(), ChatError> {
    if content.is_empty() {
        return Err(ChatError::invalid("content must not be empty"));
    }
    // PostgreSQL cannot store U+0000 in text; refused on every backend
    // alike, here, so that it never reaches (and fails) a whole batch.
    if content.contains('\0') {
        return Err(ChatError::invalid("content must not contain U+0000 (NUL)"));
    }
    // Count characters without walking more than max + 1 of them.
    if content.len() > max_chars && content.chars().nth(max_chars).is_some() {
        return Err(ChatError::TooLarge(format!(
            "content is longer than {max_chars} characters"
        )));
    }
    Ok(())
}

/// A message's seq as a client names it: 1 or more.
fn check_seq(field: &str, seq: i64) -> Result<(), ChatError> {
    if seq < 1 {
        return Err(ChatError::invalid(format!("{field} must be a seq ≥ 1")));
    }
    Ok(())
}

/// Longest reaction emoji, in bytes (a flag or a family is 8 to 25 in
/// UTF-8; 16 holds every single emoji with a modifier).
pub const MAX_EMOJI_BYTES: usize = 16;

/// A validated `edit`, `delete` or `react` on the message at `seq` (v1.2).
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    pub user: UserId,
    pub target: Target,
    pub seq: i64,
    pub change: MessageChange,
}

impl ChangeRequest {
    /// An `edit` payload: its content is checked as a send's.
    pub fn edit(raw: ChangeInput, user: UserId, max_chars: usize) -> Result<Self, ChatError> {
        let target = Target::parse(&raw.conversation_type, raw.receiver_id)?;
        check_seq("seq", raw.seq)?;
        let Some(content) = raw.content else {
            return Err(ChatError::invalid("an edit needs content"));
        };
        check_content(&content, max_chars)?;
        Ok(ChangeRequest {
            user,
            target,
            seq: raw.seq,
            change: MessageChange::Edit(content),
        })
    }

    /// A `react` payload: an emoji of 1 to [`MAX_EMOJI_BYTES`] bytes with
    /// at least one character outside ASCII and no whitespace or control
    /// characters; `on` defaults to adding it.
    pub fn react(raw: ChangeInput, user: UserId) -> Result<Self, ChatError> {
        let target = Target::parse(&raw.conversation_type, raw.receiver_id)?;
        check_seq("seq", raw.seq)?;
        let emoji = raw
            .emoji
            .ok_or_else(|| ChatError::invalid("a reaction needs an emoji"))?;
        let bad = emoji.chars().any(|c| c.is_whitespace() || c.is_control());
        if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES || bad || emoji.is_ascii() {
            return Err(ChatError::invalid(format!(
                "emoji must be 1 to {MAX_EMOJI_BYTES} bytes with a character outside ASCII \
                 and no whitespace or control characters"
            )));
        }
        Ok(ChangeRequest {
            user,
            target,
            seq: raw.seq,
            change: MessageChange::React {
                user,
                emoji,
                on: raw.on.unwrap_or(true),
            },
        })
    }

    /// A `delete` payload (a `content` in it is ignored).
    pub fn delete(raw: ChangeInput, user: UserId) -> Result<Self, ChatError> {
        let target = Target::parse(&raw.conversation_type, raw.receiver_id)?;
        check_seq("seq", raw.seq)?;
        Ok(ChangeRequest {
            user,
            target,
            seq: raw.seq,
            change: MessageChange::Delete,
        })
    }
}

/// A `clientMsgId` is 1–64 characters without control characters or
/// leading or trailing whitespace. MySQL's `utf8mb4_bin` compares with
/// trailing spaces ignored, so `"k"` and `"k "` would be one key in its
/// unique index and two in every other lookup; PostgreSQL cannot store NUL.
fn check_client_msg_id(id: &str) -> Result<(), ChatError> {
    let bad_chars = id.chars().any(char::is_control) || id.trim() != id;
    if id.is_empty() || id.chars().count() > MAX_CLIENT_MSG_ID || bad_chars {
        return Err(ChatError::invalid(format!(
            "clientMsgId must be 1 to {MAX_CLIENT_MSG_ID} characters, without control \
             characters or leading or trailing whitespace"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: i64) -> UserId {
        UserId::parse(n).unwrap()
    }

    #[test]
    fn a_username_keeps_exactly_what_was_given() {
        assert_eq!(Username::parse("al.ice-_9").unwrap().as_str(), "al.ice-_9");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("al ice").is_err());
    }

    #[test]
    fn a_password_is_8_to_128_characters_kept_as_given() {
        assert!(Password::parse("1234567").is_err());
        assert_eq!(Password::parse("12345678").unwrap().as_str(), "12345678");
        // Counted in characters, not bytes: eight é are 16 bytes.
        assert_eq!(Password::parse("éééééééé").unwrap().as_str(), "éééééééé");
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn a_group_name_keeps_exactly_what_was_given() {
        assert_eq!(GroupName::parse("team  one").unwrap().as_str(), "team  one");
    }

    #[test]
    fn member_ids_keep_every_id_in_order_and_name_the_lowest_refused() {
        let ids = parse_member_ids(&[7, 3, 9]).unwrap();
        assert_eq!(ids, vec![user(7), user(3), user(9)]);
        let e = parse_member_ids(&[5, -2, 0]).unwrap_err();
        assert!(e.to_string().contains("-2"), "{e}");
    }

    #[test]
    fn a_target_gives_back_the_receiver_id_it_was_parsed_from() {
        assert_eq!(Target::parse("private", 42).unwrap().receiver(), 42);
        assert_eq!(Target::parse("group", 17).unwrap().receiver(), 17);
    }

    #[test]
    fn list_cursors_round_trip_and_anything_else_is_refused() {
        let key = ActivityKey {
            last_message_id: 1042,
            conversation_id: 17,
        };
        let text = ListCursor(key).to_string();
        assert_eq!(ListCursor::parse(&text).unwrap().0, key);
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1",
            "1.2.3",
            "-1.2",
            "1.-2",
            "+1.2",
            "a.b",
            " 1.2",
            "1.2 ",
            "99999999999999999999.1",
        ] {
            assert!(
                matches!(ListCursor::parse(bad), Err(ChatError::InvalidPayload(m)) if m.starts_with("cursor:")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_limits_default_to_100_and_must_be_1_to_500() {
        assert_eq!(ListPage::parse(None, None).unwrap().limit, 100);
        assert_eq!(ListPage::parse(Some("500"), None).unwrap().limit, 500);
        assert_eq!(ListPage::parse(Some("1"), None).unwrap().limit, 1);
        for bad in ["0", "501", "", "abc", "-1", "1.5"] {
            assert!(
                matches!(ListPage::parse(Some(bad), None), Err(ChatError::InvalidPayload(m)) if m.starts_with("limit:")),
                "{bad:?}"
            );
        }
    }

    fn raw(content: &str) -> SendMessage {
        SendMessage {
            conversation_type: "private".into(),
            receiver_id: 2,
            content: content.into(),
            client_msg_id: None,
            sender_id: None,
            reply_to_seq: None,
            mentions: None,
        }
    }

    #[test]
    fn a_sender_id_other_than_the_authenticated_user_is_forbidden() {
        let mut claimed = raw("hi");
        claimed.sender_id = Some(1);
        assert!(SendRequest::parse(claimed.clone(), user(1), 10).is_ok());
        assert!(matches!(
            SendRequest::parse(claimed, user(3), 10),
            Err(ChatError::Forbidden(_))
        ));
    }

    #[test]
    fn content_is_counted_in_characters_not_bytes() {
        assert!(SendRequest::parse(raw(&"é".repeat(4)), user(1), 4).is_ok());
        assert!(matches!(
            SendRequest::parse(raw(&"é".repeat(5)), user(1), 4),
            Err(ChatError::TooLarge(_))
        ));
    }

    #[test]
    fn empty_content_is_invalid_and_whitespace_is_kept() {
        assert!(matches!(
            SendRequest::parse(raw(""), user(1), 4),
            Err(ChatError::InvalidPayload(_))
        ));
        assert_eq!(
            SendRequest::parse(raw(" "), user(1), 4).unwrap().content,
            " "
        );
    }

    #[test]
    fn nul_content_and_untrimmed_or_control_client_msg_ids_are_invalid() {
        assert!(matches!(
            SendRequest::parse(raw("a\0b"), user(1), 4),
            Err(ChatError::InvalidPayload(_))
        ));
        for id in ["k ", " k", "k\0", "k\n1", "\t"] {
            let mut r = raw("hi");
            r.client_msg_id = Some(id.into());
            assert!(
                matches!(
                    SendRequest::parse(r, user(1), 4),
                    Err(ChatError::InvalidPayload(_))
                ),
                "{id:?}"
            );
        }
        let mut r = raw("hi");
        r.client_msg_id = Some("c-81 with inner spaces".into());
        assert!(SendRequest::parse(r, user(1), 4).is_ok());
        assert!(GroupName::parse("a\0b").is_err());
        assert!(GroupName::parse("team  one").is_ok());
    }

    #[test]
    fn group_names_are_one_to_a_hundred_characters() {
        assert!(GroupName::parse(&"é".repeat(100)).is_ok());
        assert!(GroupName::parse(&"é".repeat(101)).is_err());
        assert!(GroupName::parse(&"x".repeat(500)).is_err());
        assert!(GroupName::parse("x").is_ok());
        assert!(GroupName::parse("   ").is_err());
    }

    #[test]
    fn client_msg_ids_are_one_to_sixty_four_characters() {
        let with = |id: String| {
            let mut r = raw("hi");
            r.client_msg_id = Some(id);
            SendRequest::parse(r, user(1), 4)
        };
        assert_eq!(
            with("é".repeat(64)).unwrap().client_msg_id.as_deref(),
            Some("é".repeat(64).as_str())
        );
        assert!(with("é".repeat(65)).is_err());
        assert!(with(String::new()).is_err());
        assert!(with("k".into()).is_ok());
    }

    #[test]
    fn usernames_follow_the_documented_alphabet() {
        assert!(Username::parse("al.ice-_9").is_ok());
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("alice!").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
    }
}
