"""The HTTP side: the Flask app factory, webhooks in, the JSON API, the pages, the server."""
