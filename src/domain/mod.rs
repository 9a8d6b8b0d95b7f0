//! Domain types that validate when parsed. Nothing here imports from the
//! rest of the crate: the other layers depend on the domain, not the reverse.

pub mod access_token;
pub mod attributes;
pub mod client;
pub mod client_id;
pub mod device;
pub mod grant_type;
pub mod opaque;
pub mod password;
pub mod resource;
pub mod scope;
pub mod signing;
pub mod totp;
pub mod username;

pub use access_token::AccessClaims;
pub use attributes::{AttributeName, Attributes};
pub use client::Client;
pub use client_id::ClientId;
pub use grant_type::GrantType;
pub use opaque::{
    AuthorizationCode, ChallengeToken, ClientSecret, RecoveryCode, RecoveryKey, RefreshToken,
    TokenHash,
};
pub use password::PlainPassword;
pub use resource::{Resource, ResourceUri};
pub use scope::Scope;
pub use username::Username;
