"""Input loading: embedding files now; image folders and datasets come with the codecs that need them."""
