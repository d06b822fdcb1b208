"""The mirror folder: its layout, the engine that fills it with exactly the locked files
(bandersnatch, or olmirror's own fetch and pages), what it prunes, and its verification."""
