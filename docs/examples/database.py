import sqlite3

import qbreaker

db = sqlite3.connect(":memory:")
db.execute("create table users (id integer primary key, name text)")
db.execute("insert into users (name) values ('ada')")

# A constraint violation is the caller's bug, not the database being down:
# exclude it, so it never counts towards tripping the breaker.
database = qbreaker.CircuitBreaker(5, 10.0, 2, name="users-db",
                                   exclude=[sqlite3.IntegrityError])

def find_user(user_id):
    with database:
        row = db.execute("select name from users where id = ?", (user_id,))
        return row.fetchone()

print(find_user(1))                      # ('ada',)
try:
    with database:
        db.execute("insert into users (id, name) values (1, 'dup')")
except sqlite3.IntegrityError:
    pass
print(database.consecutive_failures)    # 0: excluded exceptions are neutral
