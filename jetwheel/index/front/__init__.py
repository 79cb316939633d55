"""nginx in front of the app and the static export, following the store."""
