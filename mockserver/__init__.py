"""The wanmock mock server: a Starlette app that behaves like each Wan 2.7 video provider."""
