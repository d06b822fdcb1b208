"""What olmirror knows of OpenLambda: its lambda tarballs, its sandbox's pip, its packages."""
