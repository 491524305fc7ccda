module github.com/inferd/inferd/preprocess/floorbench

go 1.26.8

require github.com/inferd/inferd v0.0.0

require golang.org/x/image v0.48.0

replace github.com/inferd/inferd => ../..
