// The sans-I/O overlay cores: link handshake, host cache, promotion, DHT, presence, messages.
