//! The Firefox Profiler and flame-graph outputs of a [`Profile`].

use super::{Profile, ProfileError};

impl Profile {
    /// Writes the Firefox Profiler's processed format.
    pub fn write_json(&self, _out: &mut dyn std::io::Write) -> Result<(), ProfileError> {
        Err(ProfileError::UnknownFormat("json".into()))
    }

    /// Writes a flame graph as SVG.
    pub fn write_svg(&self, _out: &mut dyn std::io::Write) -> Result<(), ProfileError> {
        Err(ProfileError::UnknownFormat("svg".into()))
    }
}
