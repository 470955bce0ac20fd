// Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
// them at compile time, and Cargo does not otherwise know to look.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
