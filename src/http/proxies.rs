//! The trusted proxies of `LATCHD_TRUSTED_PROXIES`: single addresses or CIDR ranges
//! (`172.16.0.0/12`, `fd00::/8`), parsed by hand. A range's address may have no bit set past its
//! prefix (`172.16.0.1/12` is refused, naming `172.16.0.0/12`): such a value is more often a
//! single address with a stray suffix than a range, and guessing would trust the wrong hosts.

use std::fmt;
use std::net::IpAddr;

/// The peers whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<AddressRange>);

impl TrustedProxies {
    /// These ranges.
    pub fn new(ranges: Vec<AddressRange>) -> Self {
        Self(ranges)
    }

    /// Whether `ip` (in any spelling: an IPv4-mapped IPv6 address is its IPv4 address) lies in
    /// one of the ranges.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|range| range.contains(ip))
    }
}

/// One address, or a network in CIDR notation (RFC 4632 §3.1, RFC 4291 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRange {
    /// Canonical: an IPv4-mapped range is kept as the IPv4 range.
    network: IpAddr,
    prefix: u8,
}

/// Why a text is no address range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The part before any `/` is no IP address.
    NotAnAddress,
    /// The prefix length is not 1-3 decimal digits.
    BadPrefix,
    /// The prefix length is longer than the address (32 for IPv4, 128 for IPv6).
    PrefixTooLong {
        /// The address's width in bits.
        max: u8,
    },
    /// `/0` would believe every peer's `X-Forwarded-For`, which anyone can forge.
    ZeroPrefix,
    /// Bits are set past the prefix; `network` is the range that was probably meant.
    HostBitsSet {
        /// The range with those bits cleared, as `address/prefix`.
        network: String,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnAddress => f.write_str("not an IP address or CIDR range"),
            Self::BadPrefix => f.write_str("the prefix length is not a number"),
            Self::PrefixTooLong { max } => write!(f, "the prefix length is over {max}"),
            Self::ZeroPrefix => f.write_str("a /0 range would trust every address"),
            Self::HostBitsSet { network } => {
                write!(f, "bits are set past the prefix (the range is {network})")
            }
        }
    }
}

impl std::error::Error for RangeError {}

impl AddressRange {
    /// `192.0.2.7`, `2001:db8::1`, `172.16.0.0/12` or `fd00::/8`.
    ///
    /// # Errors
    /// The first rule of [`RangeError`] that `text` breaks.
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let (address, prefix) = match text.split_once('/') {
            None => (text, None),
            Some((address, prefix)) => (address, Some(prefix)),
        };
        let address: IpAddr = address.parse().map_err(|_| RangeError::NotAnAddress)?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) => {
                if digits.is_empty()
                    || digits.len() > 3
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(RangeError::BadPrefix);
                }
                let prefix: u8 = digits
                    .parse()
                    .map_err(|_| RangeError::PrefixTooLong { max })?;
                if prefix > max {
                    return Err(RangeError::PrefixTooLong { max });
                }
                prefix
            }
        };
        let bits = bits_of(address);
        let network = bits & mask(prefix, max);
        if network != bits {
            let network = from_bits(network, address.is_ipv4());
            return Err(RangeError::HostBitsSet {
                network: format!("{network}/{prefix}"),
            });
        }
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: peers are compared in canonical form.
        let range = match address {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Self {
                    network: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Self {
                    network: address,
                    prefix,
                },
            },
            _ => Self {
                network: address,
                prefix,
            },
        };
        // A mapped /96 is every IPv4 address: the same hole as /0.
        if range.prefix == 0 {
            return Err(RangeError::ZeroPrefix);
        }
        Ok(range)
    }

    /// Whether the canonical address `ip` lies in this range.
    fn contains(self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        bits_of(ip) & mask(self.prefix, max) == bits_of(self.network)
    }
}

/// The address as a number, IPv4 in the low 32 bits.
fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        // Masked from an IPv4 address: the high bits are zero.
        IpAddr::V4(u32::try_from(bits).unwrap_or(u32::MAX).into())
    } else {
        IpAddr::V6(bits.into())
    }
}

/// The top `prefix` of `width` bits set (`prefix <= width <= 128`).
fn mask(prefix: u8, width: u8) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let host = u32::from(width - prefix);
    if host >= 128 {
        0
    } else {
        (all >> host) << host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            ranges
                .iter()
                .map(|r| AddressRange::parse(r).unwrap())
                .collect(),
        )
    }

    #[test]
    fn a_range_holds_exactly_its_addresses() {
        let trusted = proxies(&["172.16.0.0/12", "fd00::/8", "192.0.2.7"]);
        for inside in ["172.16.0.1", "172.31.255.255", "fd12:3456::1", "192.0.2.7"] {
            assert!(trusted.trusts(ip(inside)), "{inside}");
        }
        for outside in [
            "172.15.255.255",
            "172.32.0.0",
            "fe00::1",
            "fc00::1",
            "192.0.2.8",
            "10.0.0.1",
            "::172.16.0.1", // IPv4-compatible is not IPv4-mapped
        ] {
            assert!(!trusted.trusts(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn mapped_addresses_and_ranges_compare_as_ipv4() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert!(trusted.trusts(ip("::ffff:10.1.2.3")));
        let mapped = proxies(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.trusts(ip("10.200.0.1")));
        assert!(mapped.trusts(ip("::ffff:10.200.0.1")));
        assert!(!mapped.trusts(ip("11.0.0.1")));
    }

    #[test]
    fn edges_of_the_prefix_lengths() {
        assert!(proxies(&["128.0.0.0/1"]).trusts(ip("255.1.1.1")));
        assert!(!proxies(&["128.0.0.0/1"]).trusts(ip("127.255.255.255")));
        assert!(proxies(&["192.0.2.7/32"]).trusts(ip("192.0.2.7")));
        assert!(proxies(&["8000::/1"]).trusts(ip("ffff::1")));
        assert!(!proxies(&["8000::/1"]).trusts(ip("7fff::1")));
        assert!(proxies(&["2001:db8::1/128"]).trusts(ip("2001:db8::1")));
        assert!(!proxies(&["2001:db8::1/128"]).trusts(ip("2001:db8::2")));
        assert!(TrustedProxies::default().trusts(ip("127.0.0.1")).eq(&false));
    }

    #[test]
    fn every_malformed_range_has_its_error() {
        let cases = [
            ("garbage", RangeError::NotAnAddress),
            ("", RangeError::NotAnAddress),
            ("/8", RangeError::NotAnAddress),
            ("10.0.0/8", RangeError::NotAnAddress),
            ("10.0.0.0/", RangeError::BadPrefix),
            ("10.0.0.0/+8", RangeError::BadPrefix),
            ("10.0.0.0/-1", RangeError::BadPrefix),
            ("10.0.0.0/ 8", RangeError::BadPrefix),
            ("10.0.0.0/8/8", RangeError::BadPrefix),
            ("10.0.0.0/0008", RangeError::BadPrefix),
            ("10.0.0.0/33", RangeError::PrefixTooLong { max: 32 }),
            ("10.0.0.0/999", RangeError::PrefixTooLong { max: 32 }),
            ("fd00::/129", RangeError::PrefixTooLong { max: 128 }),
            ("0.0.0.0/0", RangeError::ZeroPrefix),
            ("::/0", RangeError::ZeroPrefix),
            ("::ffff:0.0.0.0/96", RangeError::ZeroPrefix),
            (
                "172.16.0.1/12",
                RangeError::HostBitsSet {
                    network: "172.16.0.0/12".to_owned(),
                },
            ),
            (
                "fd00::1/8",
                RangeError::HostBitsSet {
                    network: "fd00::/8".to_owned(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(AddressRange::parse(text), Err(want), "{text:?}");
        }
    }
}
