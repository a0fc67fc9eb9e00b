"""Answer cache: scopes, write generations, and its Redis and in-process stores."""
