"""APNs: the HTTP/2 provider connection, and the pusher that decides who is pushed when."""
