//! The `families` row (schema 9): a [`FamilyRecord`] in a fixed binary layout instead of JSON.
//! Every rotation reads and writes one on the writer thread, and the JSON codec (hex tokens,
//! field names, escapes) was a tenth of the server's CPU per rotation (README "Data model").
//!
//! The layout, numbers big-endian, times signed seconds:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | the layout's tag, [`TAG`] |
//! | 16 | the user's id |
//! | 8, 8 | `created_at`, `expires_at_max` |
//! | 8, 32, 8 | the current token: generation (unsigned), hash, `expires_at` |
//! | 1 | the kind: 0 API, 1 browser |
//! | 1 | which optional parts follow ([`PREVIOUS`] ... [`CLIENT_IP`]); the rest of its bits 0 |
//! | 32, 8, 32 | previous token: hash, `rotated_at`, the sealed successor |
//! | 8 | `revoked_at` |
//! | 8, 8 | browser part: idle timeout, last use |
//! | 2 + n | the user agent: its length, then its UTF-8 bytes |
//! | 1 + 4 or 1 + 16 | the client address: 4 or 6, then its bytes |
//!
//! The optional parts come in that order, each only when its bit is set, and nothing may follow
//! the last one. A row that breaks any of this is [`StoreError::Corrupt`], never a panic.
//! PostgreSQL keeps its rows as JSON (`records.rs`); only this file's encoding changed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use uuid::Uuid;

use super::records::{BrowserRecord, Current, FamilyRecord, Previous};
use super::StoreError;
use crate::model::SessionKind;

/// The first byte of a row in this layout. A JSON row starts with `{`, so a row of schema 8
/// read by mistake is reported as such.
pub(super) const TAG: u8 = 1;

/// The flag of the previous token.
const PREVIOUS: u8 = 1;
/// The flag of `revoked_at`.
const REVOKED: u8 = 1 << 1;
/// The flag of the browser part.
const BROWSER: u8 = 1 << 2;
/// The flag of a sign-in that passed a second factor (no bytes of its own).
const MFA: u8 = 1 << 3;
/// The flag of the user agent.
const USER_AGENT: u8 = 1 << 4;
/// The flag of the client address.
const CLIENT_IP: u8 = 1 << 5;
/// Every flag this layout has.
const FLAGS: u8 = PREVIOUS | REVOKED | BROWSER | MFA | USER_AGENT | CLIENT_IP;

/// The bytes every row has: tag, user, two times, the current token, kind and flags.
const FIXED: usize = 1 + 16 + 8 + 8 + (8 + 32 + 8) + 1 + 1;

/// `rec` as a row.
///
/// # Errors
/// [`StoreError::Unsupported`] for a user agent over 65,535 bytes (sign-in cuts it to 256).
pub(super) fn encode(rec: &FamilyRecord) -> Result<Vec<u8>, StoreError> {
    let mut row = Vec::with_capacity(FIXED + 72 + 8 + 16 + 2 + 64 + 17);
    row.push(TAG);
    row.extend_from_slice(rec.user.as_bytes());
    row.extend_from_slice(&rec.created_at.to_be_bytes());
    row.extend_from_slice(&rec.expires_at_max.to_be_bytes());
    row.extend_from_slice(&rec.current.generation.to_be_bytes());
    row.extend_from_slice(&rec.current.hash);
    row.extend_from_slice(&rec.current.expires_at.to_be_bytes());
    row.push(match rec.kind {
        SessionKind::Api => 0,
        SessionKind::Browser => 1,
    });
    let flag = |on: bool, flag: u8| if on { flag } else { 0 };
    row.push(
        flag(rec.previous.is_some(), PREVIOUS)
            | flag(rec.revoked_at.is_some(), REVOKED)
            | flag(rec.browser.is_some(), BROWSER)
            | flag(rec.mfa, MFA)
            | flag(rec.user_agent.is_some(), USER_AGENT)
            | flag(rec.client_ip.is_some(), CLIENT_IP),
    );
    if let Some(prev) = &rec.previous {
        row.extend_from_slice(&prev.hash);
        row.extend_from_slice(&prev.rotated_at.to_be_bytes());
        row.extend_from_slice(&prev.sealed);
    }
    if let Some(at) = rec.revoked_at {
        row.extend_from_slice(&at.to_be_bytes());
    }
    if let Some(b) = rec.browser {
        row.extend_from_slice(&b.idle_secs.to_be_bytes());
        row.extend_from_slice(&b.last_used_at.to_be_bytes());
    }
    if let Some(agent) = &rec.user_agent {
        let len = u16::try_from(agent.len())
            .map_err(|_| StoreError::Unsupported("a user agent longer than 65,535 bytes"))?;
        row.extend_from_slice(&len.to_be_bytes());
        row.extend_from_slice(agent.as_bytes());
    }
    match rec.client_ip {
        Some(IpAddr::V4(ip)) => {
            row.push(4);
            row.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            row.push(6);
            row.extend_from_slice(&ip.octets());
        }
        None => {}
    }
    Ok(row)
}

/// A row read back.
///
/// # Errors
/// [`StoreError::Corrupt`] for a row this layout does not describe.
pub(super) fn decode(row: &[u8]) -> Result<FamilyRecord, StoreError> {
    let mut r = Reader(row);
    match r.array::<1>()? {
        [TAG] => {}
        [b'{'] => return Err(corrupt("a JSON row (schema 8 or older) in a schema-9 file")),
        _ => return Err(corrupt("a row of an unknown layout")),
    }
    let user = Uuid::from_bytes(r.array()?);
    let created_at = r.int()?;
    let expires_at_max = r.int()?;
    let current = Current {
        generation: u64::from_be_bytes(r.array()?),
        hash: r.array()?,
        expires_at: r.int()?,
    };
    let kind = match r.array::<1>()? {
        [0] => SessionKind::Api,
        [1] => SessionKind::Browser,
        _ => return Err(corrupt("a session kind neither 0 nor 1")),
    };
    let [flags] = r.array()?;
    if flags & !FLAGS != 0 {
        return Err(corrupt("a flag this layout does not have"));
    }
    let on = |flag: u8| flags & flag != 0;
    let previous = if on(PREVIOUS) {
        Some(Previous {
            hash: r.array()?,
            rotated_at: r.int()?,
            sealed: r.array()?,
        })
    } else {
        None
    };
    let revoked_at = on(REVOKED).then(|| r.int()).transpose()?;
    let browser = if on(BROWSER) {
        Some(BrowserRecord {
            idle_secs: r.int()?,
            last_used_at: r.int()?,
        })
    } else {
        None
    };
    let user_agent = on(USER_AGENT).then(|| r.text()).transpose()?;
    let client_ip = on(CLIENT_IP).then(|| r.ip()).transpose()?;
    if !r.0.is_empty() {
        return Err(corrupt(&format!("{} bytes after the row's end", r.0.len())));
    }
    Ok(FamilyRecord {
        user,
        created_at,
        expires_at_max,
        current,
        previous,
        revoked_at,
        kind,
        mfa: on(MFA),
        browser,
        user_agent,
        client_ip,
    })
}

/// The unread rest of a row.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| corrupt("a row shorter than its fields"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn int(&mut self) -> Result<i64, StoreError> {
        self.array().map(i64::from_be_bytes)
    }

    fn text(&mut self) -> Result<String, StoreError> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        let (bytes, rest) = self
            .0
            .split_at_checked(len)
            .ok_or_else(|| corrupt("a text longer than its row"))?;
        self.0 = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a text that is not UTF-8"))
    }

    fn ip(&mut self) -> Result<IpAddr, StoreError> {
        match self.array::<1>()? {
            [4] => Ok(Ipv4Addr::from(self.array::<4>()?).into()),
            [6] => Ok(Ipv6Addr::from(self.array::<16>()?).into()),
            _ => Err(corrupt("a client address neither IPv4 nor IPv6")),
        }
    }
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        table: "families",
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser session with every optional part set.
    fn full() -> FamilyRecord {
        FamilyRecord {
            user: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            created_at: 1_700_000_000,
            expires_at_max: -5,
            current: Current {
                generation: u64::MAX,
                hash: [7; 32],
                expires_at: i64::MIN,
            },
            previous: Some(Previous {
                hash: [8; 32],
                rotated_at: i64::MAX,
                sealed: [9; 32],
            }),
            revoked_at: Some(42),
            kind: SessionKind::Browser,
            mfa: true,
            browser: Some(BrowserRecord {
                idle_secs: 1800,
                last_used_at: 1_700_000_100,
            }),
            user_agent: Some("Mozilla/5.0 \u{e9}\"\\".to_owned()),
            client_ip: Some("2001:db8::1".parse().unwrap()),
        }
    }

    /// A fresh API session: no optional part.
    fn bare() -> FamilyRecord {
        FamilyRecord {
            previous: None,
            revoked_at: None,
            kind: SessionKind::Api,
            mfa: false,
            browser: None,
            user_agent: None,
            client_ip: None,
            ..full()
        }
    }

    /// Compares through `Debug`: the record has no `PartialEq` of its own.
    fn same(a: &FamilyRecord, b: &FamilyRecord) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    fn detail(row: &[u8]) -> String {
        match decode(row) {
            Err(StoreError::Corrupt { table, detail }) => {
                assert_eq!(table, "families");
                detail
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_field_round_trips_in_every_combination_of_parts() {
        for mask in 0..=FLAGS {
            let mut rec = bare();
            let set = |flag: u8| mask & flag != 0;
            if set(PREVIOUS) {
                rec.previous = full().previous;
            }
            if set(REVOKED) {
                rec.revoked_at = Some(-1);
            }
            if set(BROWSER) {
                rec.browser = full().browser;
                rec.kind = SessionKind::Browser;
            }
            rec.mfa = set(MFA);
            if set(USER_AGENT) {
                rec.user_agent = Some(String::new());
            }
            if set(CLIENT_IP) {
                rec.client_ip = Some("192.0.2.7".parse().unwrap());
            }
            let row = encode(&rec).unwrap();
            assert_eq!(row[FIXED - 1], mask);
            assert!(same(&decode(&row).unwrap(), &rec), "mask {mask:#b}");
        }
        let rec = full();
        assert!(same(&decode(&encode(&rec).unwrap()).unwrap(), &rec));
    }

    #[test]
    fn a_row_is_its_fixed_part_and_the_parts_it_has() {
        assert_eq!(encode(&bare()).unwrap().len(), FIXED);
        let agent = full().user_agent.unwrap().len();
        assert_eq!(
            encode(&full()).unwrap().len(),
            FIXED + 72 + 8 + 16 + 2 + agent + 17
        );
        // Smaller than the JSON it replaces, which spelled each hash in hex.
        let rec = FamilyRecord {
            previous: full().previous,
            ..bare()
        };
        assert!(encode(&rec).unwrap().len() * 2 < super::super::records::encode(&rec).len());
    }

    #[test]
    fn every_cut_of_a_row_is_refused() {
        let row = encode(&full()).unwrap();
        for len in 0..row.len() {
            assert!(decode(&row[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn a_bad_row_is_corrupt_with_what_is_wrong() {
        let good = encode(&full()).unwrap();
        assert!(detail(b"{\"user\":1}").contains("JSON row"));
        assert!(detail(&[[2].as_slice(), &good[1..]].concat()).contains("unknown layout"));
        let mut row = good.clone();
        row[FIXED - 2] = 2;
        assert!(detail(&row).contains("kind"));
        let mut row = good.clone();
        row[FIXED - 1] |= 1 << 6;
        assert!(detail(&row).contains("flag"));
        assert!(detail(&[good.as_slice(), &[0]].concat()).contains("1 bytes after"));
        // The address's family byte, then the user agent's last byte made invalid UTF-8.
        let mut row = good.clone();
        row[good.len() - 17] = 5;
        assert!(detail(&row).contains("client address"));
        let mut row = good.clone();
        row[good.len() - 18] = 0xff;
        assert!(detail(&row).contains("UTF-8"));
        // A user agent's length past the row's end.
        let mut rec = bare();
        rec.user_agent = Some("ab".to_owned());
        let mut row = encode(&rec).unwrap();
        row[FIXED] = 0xff;
        assert!(detail(&row).contains("longer than its row"));
        assert!(detail(&row[..=FIXED]).contains("shorter"));
    }

    #[test]
    fn an_overlong_user_agent_is_refused_not_cut() {
        let rec = FamilyRecord {
            user_agent: Some("a".repeat(65_536)),
            ..bare()
        };
        assert!(matches!(encode(&rec), Err(StoreError::Unsupported(_))));
        let rec = FamilyRecord {
            user_agent: Some("a".repeat(65_535)),
            ..bare()
        };
        assert!(same(&decode(&encode(&rec).unwrap()).unwrap(), &rec));
    }
}
