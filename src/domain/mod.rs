//! Domain types that validate when parsed, and the password hasher.

pub mod access_token;
pub mod client;
pub mod client_id;
pub mod grant_type;
pub mod opaque;
pub mod password;
pub mod scope;
pub mod username;

pub use access_token::AccessClaims;
pub use client::Client;
pub use client_id::ClientId;
pub use grant_type::GrantType;
pub use opaque::{ClientSecret, RefreshToken, TokenHash};
pub use password::{PasswordHasher, PlainPassword};
pub use scope::Scope;
pub use username::Username;
