from cariosan.cli import main

main()
