//! Closed vocabularies: enums whose values each have one name, the name that is stored in the
//! database, written in policy and manifest files, printed, and sent in JSON. [`vocabulary!`]
//! defines such an enum with `ALL`, `as_str`, `FromStr` (an unknown name is an error listing
//! the known ones), `Display`, and serde as the name, so that a typo is a compile error in
//! code and a clear error in a file, never a silent default.

use thiserror::Error;

/// A name that is not in a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} {given:?} (known: {known})")]
pub struct Unknown {
    /// What the vocabulary names ("message kind", "reader-study state", …).
    pub what: &'static str,
    pub given: String,
    pub known: String,
}

/// `vocabulary! { /// doc
///     pub enum Name("what it names") { Variant = "name", … } }`
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::vocabulary::Unknown;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::vocabulary::Unknown {
                        what: $what,
                        given: s.to_string(),
                        known: Self::ALL
                            .iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    vocabulary! {
        /// A test vocabulary.
        enum Colour("colour") { Red = "red", DarkBlue = "dark-blue" }
    }

    #[test]
    fn names_parse_print_and_serialise_as_themselves() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>(), Ok(*c));
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), *c);
            // The binary encoding is the name's, byte for byte.
            assert_eq!(
                postcard::to_stdvec(c).unwrap(),
                postcard::to_stdvec(c.as_str()).unwrap()
            );
        }
        let e = "blue".parse::<Colour>().unwrap_err().to_string();
        assert_eq!(e, "unknown colour \"blue\" (known: red, dark-blue)");
        assert!(serde_json::from_str::<Colour>("\"Red\"").is_err());
    }
}
