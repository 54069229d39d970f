"""Words the synthetic catalogue is made of: a category tree whose leaves have nouns, query
synonyms (words shoppers type that titles do not contain) and per-department adjectives."""

from __future__ import annotations

# department -> subcategory -> leaf noun -> synonyms used in search queries
CATEGORY_TREE: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "electronics": {
        "audio": {"headphones": ("earphones", "headset"), "speakers": ("soundbar", "boombox")},
        "computers": {"laptops": ("notebook", "ultrabook"), "keyboards": ("keypad", "keys")},
        "phones": {"smartphones": ("mobile", "cellphone"), "chargers": ("adapter", "powerbank")},
    },
    "fashion": {
        "shoes": {"sneakers": ("trainers", "runners"), "boots": ("booties", "wellies")},
        "clothing": {"jackets": ("coat", "parka"), "tshirts": ("tee", "top")},
        "accessories": {"watches": ("wristwatch", "timepiece"), "handbags": ("purse", "tote")},
    },
    "home": {
        "kitchen": {"cookware": ("pans", "pots"), "knives": ("cleaver", "blade")},
        "furniture": {"chairs": ("seat", "stool"), "lamps": ("lighting", "lantern")},
        "bedding": {"pillows": ("cushion", "bolster"), "blankets": ("throw", "duvet")},
    },
    "sports": {
        "fitness": {"dumbbells": ("weights", "kettlebell"), "yogamats": ("mat", "pilates")},
        "outdoor": {"tents": ("shelter", "camping"), "backpacks": ("rucksack", "daypack")},
        "cycling": {"helmets": ("headgear", "lid"), "bikelights": ("headlight", "taillight")},
    },
    "beauty": {
        "skincare": {"moisturizers": ("lotion", "cream"), "serums": ("essence", "ampoule")},
        "makeup": {"lipsticks": ("lipgloss", "lipcolor"), "mascaras": ("lashes", "eyeliner")},
        "haircare": {"shampoos": ("cleanser", "wash"), "hairdryers": ("blowdryer", "dryer")},
    },
    "toys": {
        "games": {"boardgames": ("tabletop", "puzzle"), "cards": ("deck", "tcg")},
        "building": {"bricks": ("blocks", "lego"), "models": ("kit", "diorama")},
        "kids": {"plushies": ("teddy", "stuffed"), "dolls": ("figure", "figurine")},
    },
    "books": {
        "fiction": {"novels": ("story", "paperback"), "thrillers": ("suspense", "crime")},
        "nonfiction": {"cookbooks": ("recipes", "cooking"), "biographies": ("memoir", "life")},
        "learning": {"textbooks": ("course", "study"), "dictionaries": ("glossary", "lexicon")},
    },
    "grocery": {
        "drinks": {"coffee": ("espresso", "beans"), "tea": ("matcha", "chai")},
        "snacks": {"chocolate": ("cocoa", "candy"), "nuts": ("almonds", "trailmix")},
        "pantry": {"pasta": ("spaghetti", "noodles"), "oliveoil": ("oil", "evoo")},
    },
}

# department -> adjectives that appear in titles (and sometimes in queries)
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "electronics": ("wireless", "portable", "smart", "compact", "bluetooth", "fast"),
    "fashion": ("leather", "cotton", "waterproof", "slim", "classic", "casual"),
    "home": ("ceramic", "wooden", "cozy", "modern", "steel", "soft"),
    "sports": ("lightweight", "durable", "adjustable", "breathable", "foldable", "pro"),
    "beauty": ("organic", "hydrating", "matte", "vegan", "gentle", "longlasting"),
    "toys": ("colorful", "educational", "classic", "deluxe", "mini", "family"),
    "books": ("illustrated", "hardcover", "bestselling", "complete", "pocket", "annotated"),
    "grocery": ("organic", "roasted", "dark", "italian", "premium", "salted"),
}

# department -> median price, so price bands differ by department
BASE_PRICE: dict[str, float] = {
    "electronics": 180.0,
    "fashion": 70.0,
    "home": 60.0,
    "sports": 50.0,
    "beauty": 25.0,
    "toys": 30.0,
    "books": 18.0,
    "grocery": 9.0,
}

MODEL_SUFFIXES = ("one", "plus", "max", "mini", "lite", "pro", "ultra", "air", "go", "neo")

REGIONS = ("north", "south", "east", "west", "central", "coast", "capital", "islands")

# syllables that brand names are built from
BRAND_SYLLABLES = (
    "zor", "vex", "ka", "lu", "mi", "tro", "nex", "bel", "qua", "ri", "so", "dan",
    "fi", "gor", "hal", "jun", "ly", "mo", "pra", "sen", "tal", "vu", "wen", "yor",
)  # fmt: skip


def leaf_paths() -> list[tuple[str, str, str]]:
    """All (department, subcategory, leaf) triples in a fixed order."""
    return [
        (dept, sub, leaf)
        for dept, subs in CATEGORY_TREE.items()
        for sub, leaves in subs.items()
        for leaf in leaves
    ]
