//! Credentials: JWT access tokens (HS256 only) and Argon2id password hashes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::store::UserId;

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

    /// A token for `user`, valid for the configured lifetime.
    pub fn issue(&self, user: UserId) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: serde_json::Value::String(user.to_string()),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(JwtAlg::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }

    /// The user a token names.
    pub fn verify(&self, token: &str) -> Result<UserId, TokenError> {
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
        id.filter(|&id| id > 0).ok_or(TokenError::Invalid)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Argon2id at the OWASP minimum: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Argon2 runs at most this many at once per available core: each takes
/// 19 MiB and tens of milliseconds of CPU, so a flood of registrations or
/// logins from many addresses waits here instead of growing the blocking
/// pool (up to 512 threads) and the memory with it.
const HASHES_PER_CORE: usize = 2;

/// A permit to run one Argon2 computation. Callers move it into the
/// blocking task, so it is held until the hash is done even when the request
/// that asked for it is dropped (its client hung up) while the hash runs.
async fn hashing_permit() -> tokio::sync::SemaphorePermit<'static> {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores * HASHES_PER_CORE)
    });
    permits
        .acquire()
        .await
        .expect("the hashing semaphore is never closed")
}

/// Hashes a password on the blocking pool (it takes tens of milliseconds
/// of CPU, which must not stall the async workers).
pub async fn hash_password(password: String) -> String {
    let permit = hashing_permit().await;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .expect("Argon2 hashing cannot fail with valid parameters")
            .to_string()
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
        let _permit = permit;
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (dummy_hash().to_string(), false),
        };
        let ok = PasswordHash::new(&hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(b"not a real password", &salt)
            .expect("hash")
            .to_string()
    })
}

/// A fresh random secret for signing tokens (hex, 256 bits).
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
