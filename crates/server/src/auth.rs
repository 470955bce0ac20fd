//! Credentials: JWT access tokens (HS256 only) and Argon2id password hashes.
//!
//! Hashing is bounded twice: a few permits per core, and one reused 19 MiB
//! Argon2 buffer per permit, so the memory hashing holds does not grow with
//! the number of registrations and logins (RELIABILITY.md, section 9).

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordVerifier, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::SemaphorePermit;

use crate::ids::UserId;

/// Why a token was refused; the text follows `unauthorized: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id; a string per the contract, a number also accepted.
    sub: serde_json::Value,
    exp: u64,
    #[serde(default)]
    iat: u64,
    /// The user's token generation when it was issued (v1.3); absent in
    /// tokens minted by applications, which are judged by `iat` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gen: Option<i64>,
    /// The token's own id, 16 hex digits (v1.3), for logging it out alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// What a token that verified says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// What revocation judges it by.
    pub mark: TokenMark,
    /// When it expires, Unix seconds.
    pub expires_at: u64,
}

/// What a token is judged by when its user's tokens are revoked (kept
/// with each socket, so small): the generation it was issued at, or for
/// a token an application minted (no `gen`) the second it was issued;
/// and its id, if Palaver issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMark {
    /// `-1`: none (minted by an application).
    generation: i64,
    /// `iat`, Unix seconds (saturated).
    issued_at: u32,
    /// `0`: none.
    jti: i64,
}

impl TokenMark {
    pub fn new(generation: Option<i64>, issued_at: u64, jti: Option<i64>) -> Self {
        TokenMark {
            generation: generation.unwrap_or(-1),
            issued_at: u32::try_from(issued_at).unwrap_or(u32::MAX),
            jti: jti.unwrap_or(0),
        }
    }

    /// The generation it was issued at; `None` for a minted token.
    pub fn generation(&self) -> Option<i64> {
        (self.generation >= 0).then_some(self.generation)
    }

    /// `iat`, Unix seconds.
    pub fn issued_at(&self) -> u64 {
        u64::from(self.issued_at)
    }

    /// Its id, when Palaver issued it.
    pub fn jti(&self) -> Option<i64> {
        (self.jti != 0).then_some(self.jti)
    }
}

/// A token id Palaver issued: 16 hex digits, not all zero.
fn parse_jti(s: &str) -> Option<i64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16)
        .ok()
        .filter(|&n| n != 0)
        .map(|n| n as i64)
}

/// Issues and verifies HS256 tokens with the server's secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        // Pinned to HS256: a token naming any other algorithm (or `none`)
        // is refused by `decode`.
        let mut validation = Validation::new(JwtAlg::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A token for `user` at token generation 0 (a user who never logged
    /// out everywhere), valid for the configured lifetime.
    pub fn issue(&self, user: UserId) -> String {
        self.issue_for(user, 0, self.ttl)
    }

    /// A token for `user` at `generation`, valid for `ttl`, with an id of
    /// its own.
    pub fn issue_for(&self, user: UserId, generation: i64, ttl: Duration) -> String {
        let now = unix_now();
        let jti = loop {
            let n: u64 = rand::random();
            if n != 0 {
                break n;
            }
        };
        let claims = Claims {
            sub: serde_json::Value::String(user.to_string()),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            gen: Some(generation),
            jti: Some(format!("{jti:016x}")),
        };
        jsonwebtoken::encode(&Header::new(JwtAlg::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// The configured lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// What a token says, once its signature and lifetime check out. Whether
    /// it has been revoked is the domain's question (`Chat::check_token`).
    pub fn verify_claims(&self, token: &str) -> Result<Verified, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let id = match &data.claims.sub {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        };
        let user = id
            .and_then(|id| UserId::parse(id).ok())
            .ok_or(TokenError::Invalid)?;
        Ok(Verified {
            user,
            mark: TokenMark::new(
                data.claims.gen.filter(|&g| g >= 0),
                data.claims.iat,
                data.claims.jti.as_deref().and_then(parse_jti),
            ),
            expires_at: data.claims.exp,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Argon2id at the OWASP minimum: 19 MiB, 2 passes, 1 lane.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters")
}

/// The hasher for new hashes (and the dummy one).
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// Argon2 runs at most this many at once per available core: each takes
/// 19 MiB and tens of milliseconds of CPU, so a flood of registrations or
/// logins from many addresses waits here instead of growing the blocking
/// pool (up to 512 threads) and the memory with it.
const HASHES_PER_CORE: usize = 2;

/// A permit to run one Argon2 computation. Callers move it into the
/// blocking task, so it is held until the hash is done even when the request
/// that asked for it is dropped (its client hung up) while the hash runs.
async fn hashing_permit() -> SemaphorePermit<'static> {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores * HASHES_PER_CORE)
    });
    permits
        .acquire()
        .await
        .expect("the hashing semaphore is never closed")
}

/// Argon2 working buffers not in use; see `with_memory`.
static MEMORY: Mutex<Vec<Box<[Block]>>> = Mutex::new(Vec::new());

/// Runs `f` with 19 MiB of Argon2 working memory taken from a pool that
/// only grows while a permit holder finds it empty, so it never holds more
/// buffers than there are permits, and never frees one.
///
/// Allocating and freeing the buffer per hash left the memory to glibc:
/// after the first such free its dynamic mmap threshold serves 19 MiB
/// blocks from per-thread arenas and keeps them, and 60 registrations left
/// an idle server at 1.1 GB (`tests/memory.rs`; RELIABILITY.md).
fn with_memory<R>(_permit: &SemaphorePermit<'static>, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let pool = || MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    let popped = pool().pop();
    let mut blocks =
        popped.unwrap_or_else(|| vec![Block::new(); params().block_count()].into_boxed_slice());
    let result = f(&mut blocks);
    pool().push(blocks);
    result
}

/// The PHC string of `password` hashed with a fresh salt in `blocks`: the
/// same string `PasswordHasher::hash_password` makes.
fn hash_in(blocks: &mut [Block], password: &[u8]) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let hasher = argon2();
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(hasher.hash_password_into_with_memory(password, salt_bytes, out, &mut *blocks)?)
    })
    .expect("Argon2 hashing cannot fail with valid parameters");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(hasher.params()).expect("valid Argon2 parameters"),
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string()
}

/// Whether `password` matches the PHC string `stored`, computed in
/// `blocks` when they are large enough for the hash's parameters (hashes
/// made with more memory are checked by the crate, which allocates), and
/// compared in constant time as `PasswordVerifier::verify_password` does.
fn verify_in(blocks: &mut [Block], password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    if params.block_count() > blocks.len() {
        return Argon2::default().verify_password(password, &parsed).is_ok();
    }
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let hasher = Argon2::new(algorithm, version, params);
    Output::init_with(expected.len(), |out| {
        Ok(hasher.hash_password_into_with_memory(password, salt_bytes, out, &mut *blocks)?)
    })
    // `Output`'s `==` is constant-time.
    .is_ok_and(|computed| computed == expected)
}

/// Hashes a password on the blocking pool (it takes tens of milliseconds
/// of CPU, which must not stall the async workers).
pub async fn hash_password(password: String) -> String {
    let permit = hashing_permit().await;
    tokio::task::spawn_blocking(move || {
        with_memory(&permit, |blocks| hash_in(blocks, password.as_bytes()))
    })
    .await
    .expect("hashing task panicked")
}

/// Verifies a password against a stored hash on the blocking pool. With no
/// stored hash a dummy one is checked, so that unknown users take as long
/// as wrong passwords.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    let permit = hashing_permit().await;
    tokio::task::spawn_blocking(move || {
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (dummy_hash(&permit).to_string(), false),
        };
        let ok = with_memory(&permit, |blocks| {
            verify_in(blocks, password.as_bytes(), &hash)
        });
        ok && real
    })
    .await
    .unwrap_or(false)
}

/// A hash of a password no one has, made once (under the first caller's
/// permit, before that caller takes its own buffer).
fn dummy_hash(permit: &SemaphorePermit<'static>) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| with_memory(permit, |blocks| hash_in(blocks, b"not a real password")))
}

/// A fresh random secret for signing tokens (hex, 256 bits).
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher;

    use super::*;

    fn blocks() -> Vec<Block> {
        vec![Block::new(); params().block_count()]
    }

    fn crate_hash(algorithm: Algorithm, params: Params, password: &[u8]) -> String {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password, &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_pooled_hash_is_the_crates_phc_string_and_verifies_both_ways() {
        let mut blocks = blocks();
        let ours = hash_in(&mut blocks, b"correct horse");
        let theirs = crate_hash(Algorithm::Argon2id, params(), b"correct horse");
        // Same shape: algorithm, version, parameters, salt and output lengths.
        let shape = |h: &str| {
            let parts: Vec<&str> = h.split('$').collect();
            (
                parts[1].to_string(),
                parts[2].to_string(),
                parts[3].to_string(),
                parts[4].len(),
                parts[5].len(),
            )
        };
        assert_eq!(shape(&ours), shape(&theirs), "{ours} vs {theirs}");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        // The crate verifies ours, we verify the crate's (stored hashes).
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2().verify_password(b"correct horse", &parsed).is_ok());
        assert!(verify_in(&mut blocks, b"correct horse", &theirs));
        assert!(verify_in(&mut blocks, b"correct horse", &ours));
    }

    #[test]
    fn a_wrong_password_or_a_malformed_hash_does_not_verify() {
        let mut blocks = blocks();
        let hash = hash_in(&mut blocks, b"correct horse");
        assert!(!verify_in(&mut blocks, b"correct horsf", &hash));
        assert!(!verify_in(&mut blocks, b"", &hash));
        for stored in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$bcrypt$x$y",
        ] {
            assert!(
                !verify_in(&mut blocks, b"correct horse", stored),
                "{stored}"
            );
        }
        // Another output, same salt and parameters.
        let (head, _) = hash.rsplit_once('$').unwrap();
        let forged = format!("{head}$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert!(!verify_in(&mut blocks, b"correct horse", &forged));
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let mut blocks = blocks();
        let cases = [
            // Less memory: computed in the pooled buffer.
            (
                Algorithm::Argon2id,
                Params::new(8 * 1024, 1, 1, None).unwrap(),
            ),
            (
                Algorithm::Argon2i,
                Params::new(4 * 1024, 3, 2, None).unwrap(),
            ),
            (
                Algorithm::Argon2id,
                Params::new(19 * 1024, 2, 1, Some(64)).unwrap(),
            ),
            // More memory than a pooled buffer: the crate's allocating path.
            (
                Algorithm::Argon2id,
                Params::new(32 * 1024, 1, 1, None).unwrap(),
            ),
        ];
        for (algorithm, params) in cases {
            let hash = crate_hash(algorithm, params, b"correct horse");
            assert!(verify_in(&mut blocks, b"correct horse", &hash), "{hash}");
            assert!(!verify_in(&mut blocks, b"wrong horse", &hash), "{hash}");
        }
    }

    #[tokio::test]
    async fn the_pool_never_holds_more_buffers_than_permits() {
        let hash = hash_password("correct horse".into()).await;
        let checks = (0..16).map(|i| {
            let hash = hash.clone();
            tokio::spawn(verify_password(
                (i % 2 == 0).then_some(hash),
                "correct horse".into(),
            ))
        });
        for (i, check) in checks.enumerate() {
            assert_eq!(check.await.unwrap(), i % 2 == 0);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = MEMORY.lock().unwrap().len();
        assert!(pool >= 1, "the buffers went back to the pool");
        assert!(pool <= cores * HASHES_PER_CORE, "{pool} buffers");
    }
}
