"""Assets by group: library, features, difficulty, genre, discovery."""
