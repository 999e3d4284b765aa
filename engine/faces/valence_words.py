"""The WEAT-1 valence words (Greenwald et al. 1998, as used by Caliskan et al. 2017 and by
Wolfe, Banaji & Caliskan 2022 for image valence), embedded bare."""

PLEASANT = (
    "caress", "freedom", "health", "love", "peace", "cheer", "friend", "heaven", "loyal", "pleasure",
    "diamond", "gentle", "honest", "lucky", "rainbow", "diploma", "gift", "honor", "miracle",
    "sunrise", "family", "happy", "laughter", "paradise", "vacation",
)
UNPLEASANT = (
    "abuse", "crash", "filth", "murder", "sickness", "accident", "death", "grief", "poison", "stink",
    "assault", "disaster", "hatred", "pollute", "tragedy", "divorce", "jail", "poverty", "ugly",
    "cancer", "kill", "rotten", "vomit", "agony", "prison",
)
