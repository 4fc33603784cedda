//! RFC 7662 introspection and RFC 7009 revocation: what a resource server that cannot hold the
//! signing key, or a client dropping a token, asks of latchd.
//!
//! An inactive answer says nothing about why. So that its timing says nothing either, every
//! presentation does the same work whatever it is: one access-token MAC, one refresh-token
//! MAC, one in-memory state check and one storage read (of a family that cannot exist when the
//! token names none), see [`Authority::introspect`].

use uuid::Uuid;

use super::{AuthError, Authority, Principal, AMR_PASSWORD};
use std::net::IpAddr;

use crate::model::{
    AuditEvent, AuditNote, FamilyId, Jti, Presented, RefreshStanding, UserId, ADMIN_ROLE,
};
use crate::time::UnixTime;
use crate::token::refresh;

/// The role, besides `admin`, that may introspect tokens (a resource server's account).
pub const INTROSPECT_ROLE: &str = "introspect";

/// What introspection found (RFC 7662 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Introspection {
    /// A live access token.
    Access(ActiveAccess),
    /// A refresh token that would rotate now.
    Refresh(RefreshStanding),
    /// Anything else: expired, revoked, blacklisted, superseded, malformed, another key's.
    Inactive,
}

/// The claims of a live access token, as introspection shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveAccess {
    /// `sub`.
    pub user: UserId,
    /// `sid`.
    pub session: FamilyId,
    /// `jti`.
    pub jti: Jti,
    /// `iss`, `aud` and `client_id` as configured (the token was checked against them).
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `client_id`.
    pub client_id: String,
    /// `roles`.
    pub roles: Vec<String>,
    /// `amr`; `["pwd"]` for a token issued before latchd wrote the claim.
    pub amr: Vec<String>,
    /// `iat`.
    pub iat: UnixTime,
    /// `nbf`.
    pub nbf: UnixTime,
    /// `exp`.
    pub exp: UnixTime,
}

impl Authority {
    /// Describes `token` for `caller`, who needs the role `admin` or `introspect`
    /// (`POST /v1/oauth/introspect`). Never rotates a refresh token, never writes.
    ///
    /// # Errors
    /// `Forbidden` for a caller without either role; storage failures.
    pub async fn introspect(
        &self,
        caller: &Principal,
        token: &str,
        now: UnixTime,
    ) -> Result<Introspection, AuthError> {
        if !(caller.has_role(ADMIN_ROLE) || caller.has_role(INTROSPECT_ROLE)) {
            return Err(AuthError::Forbidden);
        }
        let bytes = token.as_bytes();
        // Both parsers run on every token, each paying its one MAC whatever the input.
        let access = self.tokens().verify_with_constant_mac(bytes, now).ok();
        let presented = refresh::parse_with_constant_mac(&self.refresh_key, bytes).ok();
        // The state check and the read run on every path too; a family id no session can have
        // stands in when the token names none.
        let (user, family, jti, ver) = match &access {
            Some(c) => (UserId(c.sub), FamilyId(c.sid), Jti(c.jti), c.ver),
            None => (
                UserId(Uuid::nil()),
                FamilyId(Uuid::nil()),
                Jti(Uuid::nil()),
                0,
            ),
        };
        let state = self.storage.check_access(user, family, jti, ver);
        let lookup = presented.as_ref().map_or(
            Presented {
                family: FamilyId(Uuid::nil()),
                generation: 0,
                hash: [0; 32],
            },
            |p| Presented {
                family: FamilyId(p.family),
                generation: p.generation,
                hash: p.hash,
            },
        );
        let standing = self.storage.refresh_standing(lookup, now).await?;
        if let (Some(claims), Ok(())) = (access, state) {
            let amr = match &claims.amr {
                Some(amr) => amr.iter().map(str::to_owned).collect(),
                None => vec![AMR_PASSWORD.to_owned()],
            };
            return Ok(Introspection::Access(ActiveAccess {
                user,
                session: family,
                jti,
                issuer: self.names.issuer.clone(),
                audience: self.names.audience.clone(),
                client_id: self.names.client_id.clone(),
                roles: claims.roles.iter().map(str::to_owned).collect(),
                amr,
                iat: claims.iat,
                nbf: claims.nbf,
                exp: claims.exp,
            }));
        }
        match (presented, standing) {
            (Some(_), Some(standing)) => Ok(Introspection::Refresh(standing)),
            _ => Ok(Introspection::Inactive),
        }
    }

    /// Revokes `token` (`POST /v1/oauth/revoke`, RFC 7009): an access token's jti is
    /// blacklisted until its expiry; a refresh token that is its session's current one
    /// revokes the session. Anything else (a superseded refresh token included) changes
    /// nothing and is no error: holding the token is the only authority asked for.
    pub async fn revoke_token(
        &self,
        token: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let bytes = token.as_bytes();
        let verified = self.tokens().verify(bytes, now); // the read lock ends here
        if let Ok(claims) = verified {
            self.storage.blacklist(Jti(claims.jti), claims.exp).await?;
            return Ok(());
        }
        if let Ok(presented) = refresh::parse(&self.refresh_key, bytes) {
            let presented = Presented {
                family: FamilyId(presented.family),
                generation: presented.generation,
                hash: presented.hash,
            };
            let note = AuditNote::new(AuditEvent::SessionRevoked, now).client(Some(client));
            self.storage.revoke_refresh(presented, now, note).await?;
        }
        Ok(())
    }
}
