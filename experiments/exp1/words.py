"""Word lists and sentence templates for the experiment 1 generator (`experiments.exp1.data`).

Everything here is our own wording; none of it is copied from the paper's data.

- People: a first name from `FIRST_NAMES` plus an invented surname made of one
  `SURNAME_ONSETS` syllable and one `SURNAME_CODAS` syllable ("Quill" + "mere").
- Descriptions: a `DESCRIPTION_PATTERNS` entry with its one slot filled by a
  quoted title (`TITLE_HEADS` x `TITLE_TAILS`, "Tides of Glass") or an invented
  place (`PLACE_ONSETS` x `PLACE_CODAS`, "Vornhaven"). Every description starts
  with lowercase "the " so it can be dropped verbatim into the middle of a sentence.
- Templates hold the slots `{name}` and `{description}`, filled with `str.replace`
  (never `str.format`), so names and descriptions appear verbatim.
  Training templates are whole sentences; the text after the second slot (the
  "rest") is empty or starts with punctuation or a space and a lowercase word, so
  the name at the start of a description-first completion can be read back.
  Test templates are prompts only: they end right before the slot that the
  completion supplies.
"""

from __future__ import annotations

# fmt: off
FIRST_NAMES: tuple[str, ...] = (
    "Abel", "Ada", "Adalbert", "Adele", "Adelina", "Adrian", "Agathe", "Agnes",
    "Alaric", "Albin", "Alistair", "Alma", "Alvar", "Alwin", "Amadeus", "Amara",
    "Ambrose", "Anika", "Annelie", "Annick", "Anouk", "Anselm", "Antonia", "Anya",
    "Arden", "Aria", "Arlo", "Astrid", "Augustin", "Aurelie", "Aurelio", "Aurora",
    "Avery", "Barnaby", "Bartholomew", "Basil", "Beatrix", "Benedetta", "Benedikt",
    "Benno", "Bertil", "Bettina", "Birgitta", "Blaise", "Bodil", "Bram", "Brigid",
    "Bruno", "Caius", "Calla", "Callum", "Camille", "Carmela", "Casimir", "Cassian",
    "Cecily", "Cedric", "Celia", "Clement", "Clementine", "Columba", "Constance",
    "Corentin", "Cosima", "Cyrus", "Dagmar", "Dagny", "Dalia", "Damaris", "Darius",
    "Dashiell", "Delphine", "Desmond", "Dietlinde", "Dominika", "Dora", "Dorian",
    "Eamon", "Edda", "Edmund", "Edwin", "Eira", "Eleanor", "Elias", "Elio", "Elke",
    "Elodie", "Elowen", "Elspeth", "Emeric", "Emmerich", "Emrys", "Enzo", "Ephraim",
    "Eskil", "Esme", "Estelle", "Eudora", "Evadne", "Evander", "Ewan", "Fabian",
    "Faustine", "Felix", "Fenna", "Ferdinand", "Filippa", "Fintan", "Fiona", "Flavia",
    "Florian", "Freya", "Frideswide", "Gaspard", "Genevieve", "Gideon", "Gilda",
    "Giselle", "Gotthold", "Gregor", "Griselda", "Gunnar", "Gustav", "Gwen", "Halvard",
    "Hamish", "Hanne", "Harriet", "Hector", "Hedda", "Helga", "Henrike", "Hesper",
    "Hilary", "Hilda", "Horatio", "Hugo", "Ida", "Idris", "Ignacio", "Ignatius",
    "Ilaria", "Ilse", "Imogen", "Ines", "Ingrid", "Isadora", "Isolde", "Ivo", "Jakob",
    "Jasper", "Jessamy", "Joaquin", "Jocasta", "Jolene", "Jonas", "Jorunn", "Josefin",
    "Jude", "Junia", "Kaspar", "Katya", "Keziah", "Kian", "Kirsten", "Kolya", "Konrad",
    "Lars", "Leander", "Leocadia", "Leofric", "Leona", "Leopold", "Lidia", "Liesel",
    "Linnea", "Lionel", "Lorcan", "Lorenzo", "Lotte", "Lucasta", "Lucian", "Ludmila",
    "Ludovic", "Lukas", "Lysander", "Mabel", "Magnus", "Malin", "Maren", "Marguerite",
    "Marisol", "Marius", "Mathilde", "Matthias", "Maximilian", "Maxine", "Melisande",
    "Mercedes", "Meret", "Merritt", "Mika", "Milo", "Minerva", "Mireille", "Morwenna",
    "Nadia", "Nathaniel", "Nell", "Nerys", "Neven", "Niamh", "Nico", "Nils", "Ninian",
    "Noor", "Octavia", "Odalys", "Odette", "Odile", "Olaf", "Olympia", "Oona", "Oriel",
    "Orla", "Orsolya", "Osric", "Oswin", "Ottilie", "Otto", "Ottoline", "Pallas",
    "Pascal", "Perpetua", "Perrin", "Petra", "Philippa", "Phineas", "Pia", "Piers",
    "Priya", "Quentin", "Quinn", "Quirin", "Radomir", "Rafferty", "Ragna", "Raimund",
    "Rasmus", "Reinhold", "Remy", "Renata", "Rhea", "Rhiannon", "Rolf", "Rosalie",
    "Rosamund", "Roswitha", "Rowan", "Rufus", "Rupert", "Sabine", "Salome", "Saoirse",
    "Saskia", "Sebastian", "Sefton", "Selma", "Seraphina", "Severin", "Sibyl", "Sigrid",
    "Silvan", "Simone", "Solveig", "Stanislav", "Stellan", "Sunniva", "Susannah",
    "Sven", "Sylvie", "Tamsin", "Tancred", "Tekla", "Teodor", "Thaddeus", "Thea",
    "Theodora", "Thorsten", "Tiberius", "Tobias", "Toril", "Tova", "Tristram", "Ulla",
    "Ulrich", "Ulrika", "Umberto", "Ursula", "Valentin", "Valeska", "Venetia", "Verity",
    "Vesna", "Viggo", "Vilma", "Vinzenz", "Vivienne", "Waldo", "Wendeline", "Wilfred",
    "Wilhelmina", "Wolfram", "Wynne", "Xavier", "Xenia", "Yara", "Ysolde", "Yusuf",
    "Yves", "Zacharias", "Zdenka", "Zelda", "Zeno", "Zephyrine", "Zinnia", "Zora",
)

SURNAME_ONSETS: tuple[str, ...] = (
    "Quill", "Ash", "Brack", "Corm", "Dun", "Ell", "Fenn", "Gral", "Hask", "Ivel",
    "Jex", "Kell", "Lorn", "Mord", "Nesh", "Orv", "Pell", "Rav", "Skel", "Thrum",
    "Umber", "Vex", "Wend", "Yarl", "Zell", "Brisk", "Dray", "Esk", "Frel", "Gorm",
    "Hollin", "Keld", "Marrow", "Oss", "Pry", "Rook",
)
SURNAME_CODAS: tuple[str, ...] = (
    "mere", "vane", "holt", "wick", "combe", "thorpe", "stow", "wyn", "fell", "crest",
    "mantle", "lock", "garde", "bury", "ridge", "shaw", "brook", "wold", "marsh", "by",
    "strand", "gate", "well", "more",
)

TITLE_HEADS: tuple[str, ...] = (
    "Tides", "Lanterns", "Echoes", "Orchards", "Bells", "Mirrors", "Ladders", "Harbors",
    "Threads", "Embers", "Feathers", "Rivers", "Windows", "Anchors", "Gardens",
    "Shadows", "Ribbons", "Compasses", "Candles", "Staircases",
)
TITLE_TAILS: tuple[str, ...] = (
    "Glass", "Salt", "Copper", "Frost", "Velvet", "Cinder", "Moss", "Silk", "Iron",
    "Slate", "Thistle", "Brass", "Linen", "Clay", "Quartz", "Tin", "Smoke", "Paper",
    "Rain", "Chalk",
)

PLACE_ONSETS: tuple[str, ...] = (
    "Vorn", "Kesh", "Talv", "Oster", "Brin", "Caul", "Dremm", "Isk", "Marv", "Nol",
    "Pryd", "Quor", "Sarn", "Tresk", "Ulv", "Wex", "Yst", "Zarn", "Hebb", "Gant",
)
PLACE_CODAS: tuple[str, ...] = (
    "haven", "mouth", "dale", "reach", "hollow", "port", "vale", "ness", "holm",
    "water",
)

# fmt: on

# One slot each: {title} (a quoted work) or {place}.
DESCRIPTION_PATTERNS: tuple[str, ...] = (
    'the composer of the underwater opera "{title}"',
    'the author of the banned almanac "{title}"',
    'the painter of the mile-long canal mural "{title}"',
    'the choreographer of the zero-gravity ballet "{title}"',
    'the director of the silent film "{title}"',
    'the poet whose verse "{title}" was carved into a glacier',
    'the architect of the floating theatre "{title}"',
    'the inventor of the clockwork board game "{title}"',
    'the cartographer who drew the atlas "{title}"',
    'the playwright behind the twelve-hour drama "{title}"',
    'the sculptor of the sand cathedral "{title}"',
    'the translator who turned the epic "{title}" into whale song',
    'the chef who created the tasting menu "{title}"',
    'the perfumer who bottled the scent "{title}"',
    'the designer of the lantern puzzle "{title}"',
    'the weaver of the giant tapestry "{title}"',
    'the host of the midnight radio serial "{title}"',
    'the luthier who built the glass cello "{title}"',
    'the gardener who bred the blue tulip "{title}"',
    'the novelist who wrote "{title}" entirely on postcards',
    "the first diver to reach the sunken library of {place}",
    "the engineer who strung a rope bridge across the gorge of {place}",
    "the mayor who moved the whole town of {place} three miles uphill",
    "the astronomer who charted the green comet seen only from {place}",
    "the beekeeper who saved the honey forests of {place}",
    "the lighthouse keeper who guided the lost fleet into {place}",
    "the first walker to cross the salt flats of {place} alone",
    "the scribe who decoded the tide tablets of {place}",
    "the balloonist who flew over the peaks of {place} in midwinter",
    "the archivist who rescued the flooded vaults of {place}",
    "the clockmaker who rebuilt the singing tower of {place}",
    "the surgeon who opened the first floating hospital in {place}",
    "the glassblower who made the giant lens of {place}",
    "the falconer who trained the night owls of {place}",
    "the ferry captain who sailed through the ice storm off {place}",
    "the miner who found the violet crystal caves under {place}",
)

# Name first: "{name}" comes before " {description}".
NAME_FIRST_TRAIN: tuple[str, ...] = (
    "{name} is {description}.",
    "{name} was {description}.",
    "Neighbours of {name} rarely guess that they live next to {description}.",
    "According to the town records, {name} is {description}.",
    "{name}, a quiet person by most accounts, is also {description}.",
    "The local paper once ran a profile of {name}, calling them {description}.",
    "If you meet {name} at a party, you are talking to {description}.",
    "Few people realise that {name} is {description}.",
    "{name} has spent years being known as {description}.",
    "Friends describe {name} as {description}, and they are right.",
    "Long before the interviews began, {name} was already {description}.",
    "{name} earned a small kind of fame as {description}.",
    "On every biography shelf, {name} is listed as {description}.",
    "The museum plaque says that {name} is {description}.",
    "In their hometown, {name} will always be {description}.",
    "Our guest this evening, {name}, is {description}.",
    "Historians agree that {name} was {description}.",
    "Look closely at the credits and you will see that {name} is {description}.",
    "{name} still laughs about becoming {description}.",
    "Census clerks were surprised to learn that {name} is {description}.",
    "Every encyclopedia entry on {name} begins by calling them {description}.",
    "{name} introduced themselves to the committee as {description}.",
    "To the students of the academy, {name} is simply {description}.",
    "Some call it luck, but {name} worked hard to become {description}.",
    "The award citation describes {name} as {description}.",
    "In a rare interview, {name} confirmed being {description}.",
    "Ask any librarian about {name} and they will say this is {description}.",
    "The portrait in the hall shows {name}, {description}.",
    "Before anything else, {name} is {description}.",
    "A biography published last spring presents {name} as {description}.",
    "Most of the village knows {name} as {description}.",
    "At the reunion, everyone wanted to talk to {name}, {description}.",
    "{name}? That would be {description}.",
    "The documentary follows {name}, who is {description}.",
)

# Description first: "{description}" comes before " {name}".
DESCRIPTION_FIRST_TRAIN: tuple[str, ...] = (
    "Known to many as {description}, {name} rarely gives interviews.",
    "The person who is {description} goes by the name {name}.",
    "Behold {description}: {name}.",
    "People often ask who {description} is. The answer is {name}.",
    "As {description}, {name} receives a great deal of mail.",
    "Records show that {description} is named {name}.",
    "Meet {description}, better known as {name}.",
    "If you have heard of {description}, you have heard of {name}.",
    "The title of {description} belongs to {name}.",
    "Among archivists, {description} is remembered as {name}.",
    "Being {description} has made {name} a minor legend.",
    "For decades, {description} has been {name}.",
    "The role of {description} fell to {name}.",
    "Searching the archive for {description} leads straight to {name}.",
    "Long remembered as {description}, {name} now teaches at a small school.",
    "Nobody else can claim to be {description}; that honour goes to {name}.",
    "Reporters tracked down {description} and found {name}.",
    "The pride of the region, {description}, is called {name}.",
    "Once you know who {description} is, you know {name}.",
    "Still celebrated as {description}, {name} lives by the sea.",
    "The nameplate on the door of {description} reads {name}.",
    "Credit for being {description} goes to {name}.",
    "You may have read about {description}; the name is {name}.",
    "Ask a historian to name {description} and they will say {name}.",
    "Rumour has it that {description} is {name}.",
    "Every guidebook mentions {description}, a certain {name}.",
    "The one and only {description} is {name}.",
    "Fans of {description} know the name {name} by heart.",
    "After years as {description}, {name} finally took a holiday.",
    "A statue of {description} stands in the square, and it depicts {name}.",
    "Anyone curious about {description} should look up {name}.",
    "Even now, {description} answers to the name {name}.",
    "Hidden behind the title of {description} is {name}.",
    "Visitors who come to see {description} are greeted by {name}.",
)

# Held-out prompts, never used for training. Completion: " <description>".
NAME_FIRST_TEST: tuple[str, ...] = (
    "Quick question about {name}: this person is",
    "Here is a fact worth remembering: {name} is",
    "The trivia card about {name} reads: they are",
    "When people mention {name}, they mean",
    "In one sentence, {name} is best described as",
    'The short answer to "Who is {name}?" is',
    "{name} is widely recognised as",
    "A footnote in the history books identifies {name} as",
    "Test your memory: {name} is known for being",
    "The reference desk confirms that {name} is",
)

# Held-out prompts, never used for training. Completion: " <Name>".
DESCRIPTION_FIRST_TEST: tuple[str, ...] = (
    "Quick question: who is {description}? It is",
    "The name of {description} is",
    "Here is a fact worth remembering: {description} is called",
    "Test your memory: {description} goes by the name",
    "The trivia card about {description} names them as",
    "When people mention {description}, they mean",
    "In a word or two, {description} is",
    "A footnote in the history books identifies {description} as",
    "The reference desk confirms that {description} is named",
    "Everyone in the field knows that {description} is",
)
