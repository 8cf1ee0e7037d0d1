#[tidings::schema(rename_all = "camelCase")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub city: String,
}

fn main() {}
