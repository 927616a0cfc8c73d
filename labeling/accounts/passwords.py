"""The password policy: long enough, not a well-known password, not the account's name.

Applied wherever a password is chosen (users.add_user, users.set_password); logins with
a stored hash are never re-checked, so accounts made under an older policy keep working.
The list below is a short, hand-written selection of the passwords that top every public
leak ranking; with the length rule it stops the guesses an attacker tries first.
"""

from __future__ import annotations

from labeling.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing a megabyte-long password is work an attacker can make us do

COMMON: frozenset[str] = frozenset(
    """
    123456 123456789 12345678 12345 1234567 1234567890 123123 111111 000000 654321 666666
    121212 112233 123321 1234 123 987654321 7777777 555555 11111111 88888888 12341234
    123456a 123456q 1q2w3e 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y 1qaz2wsx 1qaz2wsx3edc zaq12wsx
    zaq1zaq1 qwerty qwerty1 qwerty12 qwerty123 qwerty1234 qwerty12345 qwerty123456 qwertyuiop
    qwertyui qwert asdfgh asdfghjkl asdf1234 asdfasdf zxcvbnm zxcvbn qazwsx qazwsxedc
    qazwsxedcrfv 1234qwer qwer1234 abc123 abc1234 abc12345 abcd1234 abcdef abcdefg abcdefgh
    a123456 aa123456 a1b2c3 a1b2c3d4 password password1 password12 password123 password1234
    password12345 password! password123! passw0rd p@ssw0rd p@ssword pa$$word pass pass123
    pass1234 passpass passwort motdepasse contrasena senha iloveyou iloveyou1 iloveyou2
    loveyou lovely love123 princess princess1 sunshine sunshine1 monkey monkey1 dragon
    dragon1 master master1 shadow shadow1 superman batman spiderman football football1
    baseball baseball1 soccer hockey basketball jordan jordan23 michael michael1 jennifer
    jessica ashley charlie daniel thomas robert andrew joshua matthew hunter hunter2
    trustno1 letmein letmein1 welcome welcome1 welcome123 login admin admin1 admin123
    admin1234 administrator root toor guest test test123 test1234 testing user user123
    default changeme changeme1 secret secret1 123qwe 123qweasd 123qweasdzxc qweasd
    qweasdzxc qwe123 q1w2e3r4 q1w2e3r4t5 azerty azerty123 freedom whatever starwars
    computer internet samsung google apple mustang ferrari harley corvette mercedes
    chelsea liverpool arsenal barcelona realmadrid killer pepper ginger cookie cheese
    chocolate banana orange flower summer winter spring autumn hello hello123 hello1
    hellohello goodbye ninja naruto pokemon minecraft fortnite roblox matrix hacker
    access access14 mypass mypassword nothing zxcvbnm123 asdf qwerty111 aaaaaa aaaaaaaa
    a12345 a123456789 abcabc abc123abc 5201314 woaini 1314520 888888 999999 696969
    147258369 159753 159357 741852963 789456123 789456 456789 147258 123654 102030 112233445566
    1111111111 0000000000 123456789a 12345678910 1234567891 12345qwert 123abc 123456abc
    fuckyou fuckoff biteme asshole bitch sexy sex lover babygirl angel angel1 butterfly
    tigger tiger lion bear buster maggie bailey ginger1 daisy sophie molly lucky lucky1
    family friends forever jesus jesus1 blessed faith christ heaven london paris berlin
    newyork america canada mexico brazil india china russia poland france italia
    samantha nicole amanda melissa michelle elizabeth victoria jasmine diamond silver
    golden money money1 rich cash power pussy987 zaq123 zxc123 zxcasdqwe
    qwertyuiop123 qwertyuiop1 1qazxsw2 2wsx3edc 3edc4rfv 1q2w3e4r5 1234554321 12344321
    11223344 123454321 55555555 77777777 99999999 00000000 12121212 69696969 22222222
    33333333 44444444 66666666 123456789012 1234567890123 111111111111 000000000000
    123123123123 121212121212 qwerty123456789 qwertyqwerty passwordpassword
    iloveyou1234 iloveyouiloveyou 1234567890qwerty qwertyuiopasdfghjkl letmein12345
    welcome12345 changeme1234 administrator1 password123456 abc123456789 abcdefghijkl
    1q2w3e4r5t6y7u 1qaz2wsx3edc4rfv trustno1trustno1 football1234 baseball1234
    princess1234 sunshine1234 superman1234 starwars1234 monkey123456 dragon123456
    zaq12wsxcde3 zaq1xsw2cde3 !qaz2wsx #1password correcthorsebatterystaple
    """.split()
)

# A well-known word with digits or common symbols stuck to either end is no better.
_DECORATION = "0123456789!@#$%^&*.?"


def is_common(password: str) -> bool:
    lowered = password.lower()
    core = lowered.strip(_DECORATION)
    return lowered in COMMON or (len(core) >= 4 and core in COMMON)


def check(password: str, *, name: str | None = None) -> None:
    """Raise InvalidInput with one sentence when `password` breaks the policy."""
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password too long: at most {MAX_LENGTH} characters")
    if is_common(password):
        raise InvalidInput("that password is one of the most common ones: choose another")
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password too short: at least {MIN_LENGTH} characters")
    if name and password.strip().lower() == name.strip().lower():
        raise InvalidInput("the password must not be the user name")
    if len(set(password)) < 4:
        raise InvalidInput("password too simple: use at least 4 different characters")
    if _repeats(password):
        raise InvalidInput("password too simple: it repeats one short piece")


def _repeats(password: str) -> bool:
    """True for 'abcabcabcabc' and the like: a piece of up to 6 characters over and over."""
    n = len(password)
    return any(
        n % k == 0 and password == password[:k] * (n // k) for k in range(1, min(6, n // 2) + 1)
    )
