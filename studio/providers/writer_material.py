"""Stock material for the offline writer: places, moods, plot turns and lines per genre.

Placeholders: {a} and {b} are character names, {place} the scene's location. Each turn is
(action, synopsis clause, line, emotion); {a} speaks the line unless it starts with "b:".
The lines are English; the offline draft says so.
"""

GENRES: dict[str, dict] = {
    "romance": {
        "places": [
            "Rooftop bar",
            "Rain-soaked bus stop",
            "Hotel lobby",
            "Flower market",
            "Penthouse kitchen",
            "Riverside promenade",
        ],
        "moods": ["longing", "tender", "charged", "bittersweet"],
        "titles": ["The {noun} Between Us", "One More {noun}", "A {noun} Too Late"],
        "nouns": ["Promise", "Kiss", "Secret", "Letter", "Night"],
        "turns": [
            (
                "{a} finds {b}'s old letter tucked inside a book at the {place}.",
                "{a} finds a letter {b} never sent",
                "You kept this? All these years?",
                "shaken",
            ),
            (
                "{b} arrives with someone else on their arm; {a} freezes mid-step.",
                "{b} turns up with a new partner",
                "So this is why you stopped calling.",
                "hurt",
            ),
            (
                "{a} reaches for {b}'s hand, then pulls back as a phone buzzes.",
                "a call interrupts {a}'s confession",
                "Don't answer it. Please, not now.",
                "pleading",
            ),
            (
                "{b} reveals the engagement ring was never returned.",
                "{b} admits the ring was never returned",
                "b:I couldn't let go of it. Of you.",
                "vulnerable",
            ),
            (
                "A stranger tells {a} that {b} is leaving the city tonight.",
                "{a} learns {b} leaves tonight",
                "Tonight? They didn't even say goodbye.",
                "alarmed",
            ),
        ],
    },
    "revenge": {
        "places": [
            "Boardroom",
            "Charity gala",
            "Underground car park",
            "Courthouse steps",
            "Glass-walled office",
            "Private club",
        ],
        "moods": ["cold", "simmering", "triumphant", "menacing"],
        "titles": ["The {noun} Returns", "The Price of the {noun}", "The Last {noun}"],
        "nouns": ["Heiress", "Contract", "Debt", "Witness", "Signature"],
        "turns": [
            (
                "{a} slides a folder across the table; {b} reads the first page and goes pale.",
                "{a} shows {b} the evidence",
                "Read it. Every word is true.",
                "cold",
            ),
            (
                "{b} raises a glass to the room, unaware {a} has swapped the speech.",
                "{a} sabotages {b}'s speech",
                "Let's see you smile through this one.",
                "smug",
            ),
            (
                "The lift doors open on {a}, the person {b} thought was gone for good.",
                "{a} reappears before {b}",
                "Surprised? You left the job unfinished.",
                "menacing",
            ),
            (
                "{b} offers {a} a blank cheque in a trembling hand.",
                "{b} tries to buy {a}'s silence",
                "b:Name your price. Anything.",
                "desperate",
            ),
            (
                "{a} plays a recording and the whole room falls silent.",
                "{a} plays the recording in public",
                "Everyone deserves to hear this.",
                "triumphant",
            ),
        ],
    },
    "thriller": {
        "places": [
            "Empty subway platform",
            "Parking garage",
            "Motel corridor",
            "Server room",
            "Bridge at the docks",
            "Safe house",
        ],
        "moods": ["tense", "paranoid", "urgent", "ominous"],
        "titles": ["{noun} Protocol", "The {noun} Hour", "{noun} Down"],
        "nouns": ["Silent", "Red", "Exit", "Signal", "Ghost"],
        "turns": [
            (
                "{a} notices the same car behind them for the third time.",
                "{a} realises they are being followed",
                "Don't look back. Keep walking.",
                "tense",
            ),
            (
                "{b} hands {a} a key card that should not exist.",
                "{b} passes {a} an impossible key card",
                "Where did you get this?",
                "wary",
            ),
            (
                "The lights cut out; {a}'s phone screen shows a message from a dead number.",
                "a dead man's number texts {a}",
                "That's not possible. He's gone.",
                "terrified",
            ),
            (
                "{b} draws a gun, then turns it on the door instead of {a}.",
                "{b} turns out to be protecting {a}",
                "b:They're already inside. Move!",
                "urgent",
            ),
            (
                "{a} opens the case: it is empty except for a photo of {b}.",
                "the case holds only a photo of {b}",
                "It was you all along.",
                "stunned",
            ),
        ],
    },
    "mystery": {
        "places": [
            "Dusty archive",
            "Lighthouse",
            "Old manor library",
            "Police evidence room",
            "Antique shop",
            "Village chapel",
        ],
        "moods": ["curious", "eerie", "quiet", "suspicious"],
        "titles": ["The {noun} of Hollow Lane", "Who Took the {noun}", "The Third {noun}"],
        "nouns": ["Key", "Portrait", "Clock", "Witness", "Diary"],
        "turns": [
            (
                "{a} lifts the rug and finds a trapdoor fresh with mud.",
                "{a} finds a trapdoor someone used today",
                "Someone was here. Minutes ago.",
                "curious",
            ),
            (
                "{b}'s alibi photo shows a clock that reads the wrong hour.",
                "{b}'s alibi breaks on a clock",
                "Your photo says ten. The clock says nine.",
                "sharp",
            ),
            (
                "A page torn from the diary turns up in {b}'s coat pocket.",
                "the torn diary page is in {b}'s pocket",
                "Care to explain this?",
                "accusing",
            ),
            (
                "{a} matches the handwriting to a letter signed by the victim.",
                "the victim wrote the threat",
                "She wrote it herself. Why?",
                "puzzled",
            ),
            (
                "The portrait's eyes have been cut out; behind it, a safe.",
                "a safe hides behind the portrait",
                "Everyone walked past this for years.",
                "eerie",
            ),
        ],
    },
    "fantasy": {
        "places": [
            "Moonlit forest",
            "Crumbling temple",
            "Floating market",
            "Dragon's pass",
            "Throne room",
            "Crystal cave",
        ],
        "moods": ["wondrous", "foreboding", "epic", "mystical"],
        "titles": ["The {noun} Awakens", "Oath of the {noun}", "The Broken {noun}"],
        "nouns": ["Crown", "Blade", "Star", "Veil", "Rune"],
        "turns": [
            (
                "The rune on {a}'s palm glows as {b} speaks the old name.",
                "{a}'s rune answers an old name",
                "How do you know that name?",
                "awed",
            ),
            (
                "{b} kneels and offers {a} a sword that hums with light.",
                "{b} offers {a} the humming sword",
                "b:It chose you. Not me.",
                "solemn",
            ),
            (
                "The bridge of light shatters behind them; there is no way back.",
                "the way home shatters",
                "Then we go forward. Together.",
                "resolute",
            ),
            (
                "{b}'s shadow moves on its own and whispers to {a}.",
                "{b}'s shadow betrays a curse",
                "Your shadow just spoke to me.",
                "fearful",
            ),
            (
                "The queen's mask falls; beneath it is {b}'s face.",
                "the queen is unmasked as {b}",
                "You were the queen all along?",
                "stunned",
            ),
        ],
    },
    "sci-fi": {
        "places": [
            "Orbital station ring",
            "Neon megacity alley",
            "Cryo bay",
            "Bridge of the ship",
            "Abandoned lab",
            "Desert relay tower",
        ],
        "moods": ["sleek", "uneasy", "awe-struck", "clinical"],
        "titles": ["Signal {noun}", "The {noun} Loop", "After the {noun}"],
        "nouns": ["Zero", "Echo", "Drift", "Horizon", "Cascade"],
        "turns": [
            (
                "{a}'s reflection blinks a second too late.",
                "{a} sees their reflection lag",
                "Did you see that? My reflection.",
                "unsettled",
            ),
            (
                "{b} opens a cryo pod: the sleeper inside is {a}.",
                "{b} finds {a} asleep in a pod",
                "b:If you're in there, who are you?",
                "shocked",
            ),
            (
                "The station AI answers in {b}'s voice.",
                "the AI speaks in {b}'s voice",
                "b:That's my voice. I never recorded that.",
                "afraid",
            ),
            (
                "A countdown appears on every screen in the city.",
                "a countdown starts citywide",
                "Eleven minutes. Then what?",
                "urgent",
            ),
            (
                "{a} pulls a memory chip from behind {b}'s ear.",
                "{a} finds a chip in {b}",
                "How long have they been in your head?",
                "horrified",
            ),
        ],
    },
    "comedy": {
        "places": [
            "Office break room",
            "Wedding reception",
            "Tiny car",
            "Cooking class",
            "Dog park",
            "Karaoke bar",
        ],
        "moods": ["playful", "awkward", "chaotic", "warm"],
        "titles": ["The {noun} Incident", "Operation {noun}", "Definitely Not a {noun}"],
        "nouns": ["Cake", "Date", "Plan", "Disaster", "Wedding"],
        "turns": [
            (
                "{a} proudly unveils the cake; it slowly slides off the table.",
                "{a}'s cake slides to the floor",
                "That was... structural.",
                "mortified",
            ),
            (
                "{b} answers the wrong phone and agrees to a date on {a}'s behalf.",
                "{b} books {a} a date by mistake",
                "You said yes to WHAT?",
                "outraged",
            ),
            (
                "The karaoke screen shows {a}'s private message to everyone.",
                "{a}'s message ends up on the big screen",
                "That was not the song.",
                "panicked",
            ),
            (
                "{b} arrives in the same outfit as {a}, down to the socks.",
                "{a} and {b} turn up dressed alike",
                "Did you... copy me?",
                "indignant",
            ),
            (
                "The dog runs off with the wedding rings.",
                "the dog steals the rings",
                "Biscuit! Come back with the marriage!",
                "frantic",
            ),
        ],
    },
    "family": {
        "places": [
            "Kitchen table",
            "Hospital corridor",
            "Old family home",
            "School gate",
            "Grandmother's garden",
            "Train station",
        ],
        "moods": ["warm", "strained", "nostalgic", "hopeful"],
        "titles": ["Home for {noun}", "One Last {noun}", "Until {noun}"],
        "nouns": ["Sunday", "Supper", "Winter", "Harvest", "Christmas"],
        "turns": [
            (
                "{a} finds the adoption papers in a biscuit tin.",
                "{a} finds adoption papers",
                "Were you ever going to tell me?",
                "betrayed",
            ),
            (
                "{b} sets an extra plate at the table, for someone who never comes.",
                "{b} still sets a place for the missing son",
                "b:Just in case he comes home.",
                "tender",
            ),
            (
                "The doctor's call comes in the middle of the birthday song.",
                "a doctor's call stops the party",
                "Not today. Please, not today.",
                "afraid",
            ),
            (
                "{a} returns the money {b} lent years ago, with interest.",
                "{a} repays {b} at last",
                "b:I never wanted it back. I wanted you back.",
                "moved",
            ),
            (
                "An old video shows {b} younger, laughing with a stranger.",
                "an old video shows {b}'s secret past",
                "Who is that with you, Mum?",
                "curious",
            ),
        ],
    },
}
GENRES["other"] = GENRES["mystery"]

OPENINGS = [
    ("{a} arrives at the {place}, scanning the room.", "Here we go again.", "guarded"),
    (
        "The {place} is quiet; {a} waits, checking the time.",
        "Five more minutes. Then I leave.",
        "impatient",
    ),
    (
        "{a} and {b} meet at the {place}, neither willing to speak first.",
        "You look well.",
        "cautious",
    ),
]
BRIDGES = [
    ("{a} paces the {place}, replaying what just happened.", "Think. What did I miss?", "restless"),
    ("{b} watches {a} from across the {place}, deciding something.", "I should tell them.", "torn"),
    ("{a} and {b} sit in silence at the {place}.", "Say something. Anything.", "strained"),
]
REPLIES = [
    ("Not here. Not like this.", "tense"),
    ("You don't get to say that to me.", "angry"),
    ("I know. I've always known.", "quiet"),
    ("Then prove it.", "defiant"),
    ("Why now? Why today?", "confused"),
    ("Walk away. While you still can.", "warning"),
    ("I'm not the one who lied.", "bitter"),
    ("Tell me I'm wrong.", "pleading"),
    ("It's too late for that.", "resigned"),
    ("Look at me. Look at me!", "urgent"),
]
CAMERAS = {
    "open": ["wide establishing shot, slow push-in", "static wide", "tilt down from the skyline"],
    "bridge": ["over-the-shoulder, static", "handheld pan right", "static medium shot"],
    "turn": [
        "slow push-in, close-up",
        "pull back to reveal",
        "close-up, slow push-in",
        "pan left across the room",
    ],
}
