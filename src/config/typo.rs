//! Is a key a typo of another? Edit distance by `strsim` (optimal string alignment: an adjacent
//! transposition is one edit, so `api_kye` is one away from `api_key`). Its own file, because
//! both the suggestions and the old-name aliases ask it.

/// The candidate closest to `key` by edit distance, if close enough to be a typo.
pub(super) fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    let limit = match key.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .map(|c| (strsim::osa_distance(&key, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
